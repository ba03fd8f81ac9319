"""eventray.platform.runtime."""
