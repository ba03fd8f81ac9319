"""Make sure the read models the API queries have a current version (a fresh stack has none).

A projection without a current version is built once with the read side's own
``replay``; one that has one is left alone (its runners keep it up to date).
"""

from __future__ import annotations

from collections.abc import Callable

from eventray.platform.settings import Settings

#: the read models the GraphQL API reads
API_PROJECTIONS = ("user_directory", "account_balances", "account_activity")


def ensure_projections(settings: Settings, *, on_build: Callable[[str], None] | None = None) -> list[str]:
    """Build each API projection that has no current version; returns the ones built."""
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.replay import replay
    from eventray.platform.projections.store import ProjectionStore

    migrate(settings.dsn)
    store = ProjectionStore(settings.dsn)
    try:
        missing = [n for n in API_PROJECTIONS if store.current_version(n) is None]
    finally:
        store.close()
    for name in missing:
        if on_build is not None:
            on_build(name)
        replay(settings, name)
    return missing
