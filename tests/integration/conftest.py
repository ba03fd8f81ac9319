"""Integration tests run against the real local stack (PostgreSQL, Kafka, Ray).

``stack_settings`` (tests/conftest.py) brings the stack up once per session. Every test
under this folder is marked ``integration``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventray.platform.settings import Settings

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)




@pytest.fixture(scope="session")
def ray_address(stack_settings: Settings) -> str:
    """Address of the stack's Ray cluster, for ``ray.init(address=...)``."""
    assert stack_settings.ray_address is not None
    return stack_settings.ray_address
