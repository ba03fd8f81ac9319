"""Domain aggregates: pure Python, no I/O."""
