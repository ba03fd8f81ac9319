"""eventray.platform.devstack."""
