"""``eventray deploy``: place an app's shards, projection runners, saga coordinators and Serve app.

Idempotent: what already runs as asked is left alone, and the report says what changed. The
deployed code (the eventray wheel's sha256, and the app package's when the app lives outside
eventray) is kept in the cluster's internal KV; when it differs, every actor is replaced so
that the whole cluster runs the new code (shards hand over with fencing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventray.platform.deploy.package import Package, package_digest
from eventray.platform.errors import ConfigurationError, EventrayError
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.deploy")

_KV_NAMESPACE = "eventray"


def _record_key(settings: Settings) -> str:
    return f"deployment:{settings.topic}"


def _code(package: Package | None, rt: Any) -> str | None:
    """What names the deployed code: the wheel's sha256 (``None`` without a wheel: the dev head
    runs the installed eventray), with the app package's digest when the app ships beside it."""
    app_dir = rt.job_env().get("py_modules", [None])[0]
    app = None if app_dir is None else f"app:{package_digest(Path(app_dir))[:16]}"
    if package is None:
        return app
    return package.sha256 if app is None else f"{package.sha256}+{app}"


@dataclass
class DeployReport:
    """What ``deploy`` did."""

    changes: list[str] = field(default_factory=list)
    graphql_url: str | None = None
    previous_code: str | None = None
    code: str | None = None


def connect(rt: Any, package: Package | None) -> None:
    """Join the cluster as a driver whose job carries the package and the app's own package
    (actors and replicas inherit them)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    modules: list[str] = [str(package.module_dir)] if package else []
    modules += rt.job_env().get("py_modules", [])
    env = {"py_modules": modules} if modules else {}
    ray.init(address=rt.settings.ray_address or "auto", namespace="eventray", logging_level=logging.WARNING,
             log_to_driver=False, runtime_env=env or None)


def _read_record(settings: Settings) -> dict[str, Any]:
    from ray.experimental import internal_kv

    raw = internal_kv._internal_kv_get(_record_key(settings), namespace=_KV_NAMESPACE)
    return json.loads(raw) if raw else {}


def _write_record(settings: Settings, record: dict[str, Any]) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(_record_key(settings), json.dumps(record), overwrite=True,
                                 namespace=_KV_NAMESPACE)


def deploy(rt: Any, package: Package | None, *, serving: Any = None, sagas: bool = True, strict: bool = True,
           progress: Callable[[str], None] = lambda _: None) -> DeployReport:
    """Bring the cluster at ``rt.settings.ray_address`` to the app of ``rt`` running ``package``.

    ``package`` ``None``: the code the cluster's workers import already (the dev head). With
    ``strict``, a saga whose coordinators cannot start fails the deploy; without, it is left out
    with a line in the report that says why.
    """
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.actor import stop_topic_runners
    from eventray.platform.runtime.shards import rescale_shards, stop_shards

    settings = rt.settings
    report = DeployReport(code=_code(package, rt))
    # the event store, snapshot and projection tables: a fresh database (a managed one, or the
    # cluster's first deploy) has none; migrate applies only what is missing
    progress("database migrations")
    report.changes += [f"applied migration {name}" for name in migrate(settings.dsn)]
    connect(rt, package)
    record = _read_record(settings)
    report.previous_code = record.get("code")
    code_changed = report.code is not None and record.get("code") not in (None, report.code)
    if code_changed:
        progress("new code: replacing the actors")
        stop_shards(rt)
        report.changes.append(f"code {str(record.get('code'))[:12]} -> {str(report.code)[:12]}: shards replaced")
        n = stop_topic_runners(rt)
        report.changes.append(f"code changed: {n} projection runners replaced")

    progress("shards")
    report.changes += rescale_shards(rt)

    progress("projections")
    report.changes += _place_runners(rt)

    if sagas and rt.app.sagas:
        progress("saga coordinators")
        report.changes += _place_coordinators(rt, replace=code_changed, strict=strict)

    if serving is not None:
        progress("the GraphQL app")
        report.graphql_url, changed = _place_serve_app(rt, serving)
        if changed:
            report.changes.append(changed)

    _write_record(settings, {"code": report.code or record.get("code"), "app": settings.app,
                             "shards": settings.shards, "partitions": settings.partitions})
    return report


def _place_runners(rt: Any) -> list[str]:
    from eventray.platform.projections.ensure import ensure_projections

    started: list[str] = []
    built = ensure_projections(rt, changes=started)
    return [f"built projection {n} (replay from offset 0)" for n in built] + started


def _place_coordinators(rt: Any, *, replace: bool, strict: bool) -> list[str]:
    from eventray.platform.sagas import composition as sagas
    from eventray.platform.sagas.settings import SagaSettings

    saga_settings = SagaSettings()
    changes: list[str] = []
    for name in rt.app.sagas:
        if replace:
            sagas.stop_coordinators(rt, name)
        try:
            sagas.start_coordinators(rt, saga_settings, name, changes=changes)
        except Exception as exc:
            # a saga whose services are not there (say its model) fails in its coordinators' ready();
            # remove them rather than leave them restarting
            sagas.stop_coordinators(rt, name)
            cause = getattr(exc, "cause", None) or exc  # a Ray task error carries the actor's exception
            why = cause.message if isinstance(cause, EventrayError) else f"{type(cause).__name__}: {cause}"
            if not strict:
                changes.append(f"skipped saga {name}: its coordinators did not start: {why}")
                continue
            raise ConfigurationError(
                f"the coordinators of saga {name!r} did not start: {why}. A saga that asks a model needs the "
                f"model deployments (Serve application {rt.settings.ml_app_name!r}: `eventray models train`, then "
                "`eventray models deploy`; the bank's TransferMoney runs without them with EVENTRAY_SAGA_SCORER=rule); "
                "or leave the sagas out with --no-sagas") from exc
    return changes


def _place_serve_app(rt: Any, serving: Any) -> tuple[str, str | None]:
    from ray import serve

    from eventray.serving import deployment

    serving = serving.for_app(rt)
    try:
        before = serve.status().applications.get(serving.app_name)
    except Exception:  # noqa: BLE001 - Serve not started yet
        before = None
    url = deployment.run(rt, serving)
    if before is None:
        return url, f"deployed the Serve app {serving.app_name!r} at {url}"
    return url, None
