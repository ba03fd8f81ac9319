"""eventray.platform.eventlog."""
