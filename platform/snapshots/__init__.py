"""eventray.platform.snapshots."""
