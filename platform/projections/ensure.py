"""Make sure every projection of an app has a current version with its runners live.

A fresh stack has no read models; after a restart of Ray the read models stay in PostgreSQL
but their runners are gone. :func:`ensure_projections` builds (with :func:`~.replay.replay`)
each projection of the app that has no current version, and brings the projection hosts
(:mod:`.host`) to the configured count; they apply every current version. A projection whose ``enrich`` needs model deployments
(``Projection.models``) is left alone while the models are not served, with a line that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

__all__ = ["ensure_projections", "served_models"]


def served_models(rt: Any) -> set[str]:
    """The model names the ML Serve application of the settings serves now (empty without one)."""
    try:
        from ray import serve

        app = serve.status().applications.get(rt.settings.ml_app_name)
    except Exception:  # noqa: BLE001 - Serve not started: no model is served
        return set()
    if app is None or str(app.status) not in ("RUNNING", "ApplicationStatus.RUNNING"):
        return set()
    from eventray.serving.models.deployment import deployment_name

    return {m for m in rt.app.models if deployment_name(m) in app.deployments}


def ensure_projections(rt: Any, *, names: Collection[str] | None = None, on_build: Callable[[str], None] | None = None,
                       changes: list[str] | None = None, models: Collection[str] | None = None) -> list[str]:
    """Build the app's projections (or ``names``) that have no current version, and place the hosts
    that apply the current ones; returns the ones built. ``changes`` receives a line per host started or
    removed, and per projection skipped for want of its models (``models``: the served ones,
    default :func:`served_models`)."""
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.host import place_hosts
    from eventray.platform.projections.replay import replay
    from eventray.platform.projections.store import ProjectionStore

    wanted = list(names if names is not None else rt.app.projections)
    needy = [n for n in wanted if rt.app.projection(n).models]
    if needy:
        served = set(models) if models is not None else served_models(rt)
        for name in needy:
            missing = [m for m in rt.app.projection(name).models if m not in served]
            if missing:
                wanted.remove(name)
                if changes is not None:
                    changes.append(f"skipped projection {name}: it needs the model deployment(s) "
                                   f"{', '.join(missing)}: train the models (eventray models train) and deploy their Serve "
                                   "application (eventray models deploy), then deploy again")
    migrate(rt.settings.dsn)
    store = ProjectionStore(rt.settings.dsn)
    try:
        current = store.current_versions(rt.topic, wanted)
    finally:
        store.close()
    built = [n for n in wanted if n not in current]
    for name in built:
        if on_build is not None:
            on_build(name)
        replay(rt, name)
    if wanted:  # idempotent: hosts that are already there and own the same partitions stay
        place_hosts(rt, names=wanted, changes=changes)
    return built
