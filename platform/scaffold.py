"""``eventray new NAME``: write a starter app package that runs and whose tests pass as written.

The package (``NAME/``) holds an aggregate, a projection, a saga, a GraphQL extension, the
``eventray.App`` that declares them, given/when/then tests and a README; ``eventray serve --app
NAME.app:app`` runs it on the local stack. The templates live in ``templates/new``.
"""

from __future__ import annotations

import argparse
import keyword
import re
from importlib import resources
from pathlib import Path

from eventray.platform.errors import ConfigurationError

__all__ = ["register", "write_starter"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")

#: template file -> where it goes in the package
FILES = {
    "__init__.py.tmpl": "__init__.py", "domain.py.tmpl": "domain.py", "items.py.tmpl": "items.py",
    "archival.py.tmpl": "archival.py", "api.py.tmpl": "api.py", "schema.graphql.tmpl": "schema.graphql",
    "app.py.tmpl": "app.py", "test_domain.py.tmpl": "tests/test_domain.py", "README.md.tmpl": "README.md",
}


def write_starter(name: str, where: Path) -> list[Path]:
    """Write the starter package ``where/name``; the files written.

    Raises:
        ConfigurationError: ``name`` is not a package name, or the folder exists already.
    """
    if not _NAME.fullmatch(name) or keyword.iskeyword(name) or name in ("eventray", "test", "tests"):
        raise ConfigurationError(f"{name!r} cannot name a Python package: use lower-case letters, digits and _, "
                                 "starting with a letter (e.g. shop)")
    target = where / name
    if target.exists():
        raise ConfigurationError(f"{target} exists already; choose another name or remove it")
    templates = resources.files("eventray.platform").joinpath("templates/new")
    written = []
    for source, dest in FILES.items():
        path = target / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(templates.joinpath(source).read_text().replace("{{name}}", name))
        written.append(path)
    (target / "tests" / "__init__.py").write_text("")
    return written


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("new", help="write a starter app package: aggregate, projection, saga, GraphQL, tests")
    p.add_argument("name", help="the package's name (a Python identifier, e.g. shop)")
    p.add_argument("--dir", type=Path, default=Path.cwd(), help="where to write it (default: here)")
    p.set_defaults(func=_new)


def _new(args: argparse.Namespace) -> int:
    from rich.console import Console

    written = write_starter(args.name, args.dir)
    console = Console()
    console.print(f"wrote {len(written)} files in {args.dir / args.name}:")
    for path in written:
        console.print(f"  {path.relative_to(args.dir)}")
    console.print(f"next: [bold]python -m pytest {args.name}[/], then [bold]eventray serve --app "
                  f"{args.name}.app:app[/] (see {args.name}/README.md)")
    return 0
