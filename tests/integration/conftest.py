"""Integration tests run against the real local stack (PostgreSQL, Kafka, Ray).

``stack_settings`` brings the stack up once per session (a no-op when it already runs) and
returns the effective settings: ``kafka_bootstrap``, ``database_url`` and ``ray_address`` are
filled in. Every test under this folder is marked ``integration``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from eventray.platform import devstack
from eventray.platform.errors import StackError
from eventray.platform.settings import Settings

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Effective settings of a running stack (started in-process by ``devstack.up`` if needed)."""
    try:
        report = devstack.up(Settings(), console=Console(stderr=True, quiet=True))
    except StackError as e:
        pytest.fail(f"the local stack could not be brought up: {e.message}", pytrace=False)
    return report.settings


@pytest.fixture(scope="session")
def ray_address(stack_settings: Settings) -> str:
    """Address of the stack's Ray cluster, for ``ray.init(address=...)``."""
    assert stack_settings.ray_address is not None
    return stack_settings.ray_address
