"""Fixtures shared by the integration and e2e tests.

``stack_settings`` brings the local stack up once per session (a no-op when it already runs)
and returns the effective settings: ``kafka_bootstrap``, ``database_url`` and ``ray_address``
are filled in. ``stack_runtime`` is the default app's (the bank's) runtime on those settings.
"""

from __future__ import annotations

import pytest
from rich.console import Console

from eventray.platform import devstack
from eventray.platform.composition import Runtime
from eventray.platform.errors import StackError
from eventray.platform.settings import Settings


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Effective settings of a running stack (started in-process by ``devstack.up`` if needed)."""
    try:
        report = devstack.up(Settings(), console=Console(stderr=True, quiet=True))
    except StackError as e:
        pytest.fail(f"the local stack could not be brought up: {e.message}", pytrace=False)
    return report.settings


@pytest.fixture(scope="session")
def stack_runtime(stack_settings: Settings) -> Runtime:
    """The runtime of the default app (``EVENTRAY_APP``, the bank) on the stack's settings."""
    return Runtime.load(stack_settings)
