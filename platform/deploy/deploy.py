"""``eventray deploy``: place shards, projection runners, saga coordinators and the Serve app.

Idempotent: what already runs as asked is left alone, and the report says what changed. The
deployed wheel's sha256 is kept in the cluster's internal KV; when it differs, every actor is
replaced so that the whole cluster runs the new code (shards hand over with fencing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventray.platform.deploy.package import Package
from eventray.platform.errors import ConfigurationError
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.deploy")

_KV_NAMESPACE = "eventray"


def _record_key(settings: Settings) -> str:
    return f"deployment:{settings.topic}"


@dataclass
class DeployReport:
    """What ``deploy`` did."""

    changes: list[str] = field(default_factory=list)
    graphql_url: str | None = None
    previous_code: str | None = None
    code: str | None = None


def connect(settings: Settings, package: Package | None) -> None:
    """Join the cluster as a driver whose job carries the package (actors inherit it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address=settings.ray_address or "auto", namespace="eventray", logging_level=logging.WARNING,
             log_to_driver=False, runtime_env=package.runtime_env() if package else None)


def _read_record(settings: Settings) -> dict[str, Any]:
    from ray.experimental import internal_kv

    raw = internal_kv._internal_kv_get(_record_key(settings), namespace=_KV_NAMESPACE)
    return json.loads(raw) if raw else {}


def _write_record(settings: Settings, record: dict[str, Any]) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(_record_key(settings), json.dumps(record), overwrite=True,
                                 namespace=_KV_NAMESPACE)


def deploy(settings: Settings, package: Package | None, *, serving: Any = None, sagas: bool = True,
           progress: Callable[[str], None] = lambda _: None) -> DeployReport:
    """Bring the cluster at ``settings.ray_address`` to ``settings`` running ``package``."""
    from eventray.platform import composition
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.actor import stop_topic_runners

    report = DeployReport(code=package.sha256 if package else None)
    # the event store, snapshot and projection tables: a fresh database (a managed one, or the
    # cluster's first deploy) has none; migrate applies only what is missing
    progress("database migrations")
    report.changes += [f"applied migration {name}" for name in migrate(settings.dsn)]
    connect(settings, package)
    record = _read_record(settings)
    report.previous_code = record.get("code")
    code_changed = package is not None and record.get("code") not in (None, package.sha256)
    if code_changed and package is not None:
        progress("new code: replacing the actors")
        composition.stop_shards(settings)
        report.changes.append(f"code {str(record.get('code'))[:12]} -> {package.sha256[:12]}: shards replaced")
        n = stop_topic_runners(settings)
        report.changes.append(f"code changed: {n} projection runners replaced")

    progress("shards")
    report.changes += composition.rescale_shards(settings)

    progress("projections")
    report.changes += _place_runners(settings)

    if sagas:
        progress("saga coordinators")
        report.changes += _place_coordinators(settings, replace=code_changed)

    if serving is not None:
        progress("the GraphQL app")
        report.graphql_url, changed = _place_serve_app(settings, serving)
        if changed:
            report.changes.append(changed)

    _write_record(settings, {"code": report.code or record.get("code"), "shards": settings.shards,
                             "partitions": settings.partitions})
    return report


def _place_runners(settings: Settings) -> list[str]:
    from eventray.platform import composition
    from eventray.platform.projections.actor import start_runners
    from eventray.platform.projections.store import ProjectionStore
    from eventray.projections import PROJECTIONS
    from eventray.serving.projections_setup import ensure_projections

    started: list[str] = []
    built = ensure_projections(settings, changes=started)
    changes = [f"built projection {n} (replay from offset 0)" for n in built] + started
    store = ProjectionStore(settings.dsn)
    try:
        for name, version in store.current_versions(settings.topic, list(PROJECTIONS)).items():
            start_runners(settings, name, version, actor_options=composition.placement(settings), changes=changes)
    finally:
        store.close()
    return changes


def _place_coordinators(settings: Settings, *, replace: bool) -> list[str]:
    try:
        from eventray.platform.sagas import composition as sagas
        from eventray.platform.sagas.settings import SagaSettings
    except ImportError as exc:  # the saga runtime is optional in a build
        log.warning("saga runtime not available (%s); no coordinators placed", exc)
        return []
    saga_settings = SagaSettings()
    if saga_settings.scorer == "anomaly" and not _serve_app_running(settings.ml_app_name):
        # else each coordinator fails in ready() with Serve's "no Serve instance running"
        raise ConfigurationError(
            f"the saga coordinators score transfers with the 'anomaly' model, but Serve runs no "
            f"{settings.ml_app_name!r} application on this cluster: set EVENTRAY_SAGA_SCORER=rule "
            "(an amount limit), deploy the models first, or leave the sagas out with --no-sagas")
    if replace:
        sagas.stop_coordinators(settings, saga_settings)
    from eventray.platform import composition

    changes: list[str] = []
    sagas.start_coordinators(settings, saga_settings, actor_options=composition.placement(settings), changes=changes)
    return changes


def _serve_app_running(name: str) -> bool:
    from ray import serve

    try:
        app = serve.status().applications.get(name)
    except Exception:  # noqa: BLE001 - Serve not started: no application runs
        return False
    return app is not None and app.status == "RUNNING"


def _place_serve_app(settings: Settings, serving: Any) -> tuple[str, str | None]:
    from ray import serve

    from eventray.serving import deployment

    try:
        before = serve.status().applications.get(serving.app_name)
    except Exception:  # noqa: BLE001 - Serve not started yet
        before = None
    url = deployment.run(settings, serving)
    if before is None:
        return url, f"deployed the Serve app {serving.app_name!r} at {url}"
    return url, None
