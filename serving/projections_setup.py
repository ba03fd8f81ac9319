"""Make sure the read models the API queries have a current version (a fresh stack has none).

A projection without a current version is built once with the read side's own
``replay``; one that has one gets its runners started if they are not running.
"""

from __future__ import annotations

from collections.abc import Callable

from eventray.platform.settings import Settings

#: the read models the GraphQL API reads
API_PROJECTIONS = ("user_directory", "account_balances", "account_activity")


def ensure_projections(settings: Settings, *, on_build: Callable[[str], None] | None = None,
                       changes: list[str] | None = None) -> list[str]:
    """Build each API projection that has no current version, and make sure the runners of
    every current version are live and as many as ``projection_runners`` says (after a restart
    of Ray they are gone while the read models stay in PostgreSQL); returns the ones built.
    ``changes`` receives a line per runner started or removed."""
    from eventray.platform import composition
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.actor import start_runners
    from eventray.platform.projections.replay import replay
    from eventray.platform.projections.store import ProjectionStore

    migrate(settings.dsn)
    store = ProjectionStore(settings.dsn)
    try:
        current = {n: store.current_version(n) for n in API_PROJECTIONS}
    finally:
        store.close()
    missing = [n for n, v in current.items() if v is None]
    for name, version in current.items():
        if version is not None:  # idempotent: finds runners that are already there
            start_runners(settings, name, version, actor_options=composition.placement(settings), changes=changes)
    for name in missing:
        if on_build is not None:
            on_build(name)
        replay(settings, name)
    return missing
