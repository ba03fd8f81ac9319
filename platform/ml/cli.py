"""``eventray models train | list | promote NAME VERSION``."""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from eventray.platform.ml.registry import Registry, promote
from eventray.platform.ml.training import MODEL_NAMES, train_all
from eventray.platform.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="train, list and promote the ONNX models")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train models deterministically and write ONNX + the registry")
    p.add_argument("--version", default="1", help="version label to write (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated training data")
    p.add_argument("--model", action="append", choices=MODEL_NAMES, help="only this model (repeatable)")
    p.set_defaults(func=_train)
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


def _list(args: argparse.Namespace) -> int:
    registry = Registry(Settings().models_dir)
    defaults = registry.defaults()
    table = Table(title=f"models in {registry.model_dir}")
    for col in ("name", "version", "default", "sha256", "metrics"):
        table.add_column(col)
    for r in registry.records():
        table.add_row(r.name, r.version, "*" if defaults.get(r.name) == r.version else "", r.sha256[:16],
                      ", ".join(f"{k}={v:.3g}" for k, v in r.metrics.items()))
    Console().print(table)
    return 0


def _promote(args: argparse.Namespace) -> int:
    settings = Settings()
    promote(settings.models_dir, args.name, args.version)
    Console().print(f"{args.name}: default version is now {args.version}; replicas and clients switch "
                    "on their next request")
    return 0
