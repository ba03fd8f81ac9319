"""Operations: metrics (Ray's metrics export), JSON-lines logs and their correlation."""
