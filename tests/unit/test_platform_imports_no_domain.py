"""Nothing under platform/ or serving/ (outside the bank's own modules) imports a domain.

The bank in aggregates/, sagas/, projections/ and serving/bank/ is the bundled example app; the
platform reaches it only through the app's import path (EVENTRAY_APP), like any user's app.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ("eventray.aggregates", "eventray.sagas", "eventray.projections", "eventray.serving.bank")


def _is_domain(module: str) -> bool:
    return any(module == d or module.startswith(d + ".") for d in DOMAIN)


def domain_imports(path: Path) -> list[str]:
    """``line: module`` of every import of a domain module in ``path`` (lazy ones included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: {a.name}" for a in node.names if _is_domain(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [f"{node.lineno}: {n}" for n in names if _is_domain(n)][:1]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__"):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _is_domain(arg.value):
                    found.append(f"{node.lineno}: {arg.value}")
    return sorted(found, key=lambda s: int(s.split(":")[0]))


def platform_files() -> list[Path]:
    bank = ROOT / "serving" / "bank"
    files = sorted((ROOT / "platform").rglob("*.py")) + sorted((ROOT / "serving").rglob("*.py"))
    return [f for f in files if not f.is_relative_to(bank)]


def test_no_module_of_the_platform_imports_a_domain() -> None:
    offenders = {str(f.relative_to(ROOT)): found for f in platform_files() if (found := domain_imports(f))}
    assert not offenders, f"the platform imports the bank (reach it through the App instead): {offenders}"


def test_the_walk_sees_the_platform_and_would_catch_an_import(tmp_path: Path) -> None:
    files = {str(f.relative_to(ROOT)) for f in platform_files()}
    assert "platform/composition.py" in files and "serving/app.py" in files
    assert not any(f.startswith("serving/bank/") for f in files)
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from eventray.sagas.transfer_money import TransferPolicy\n"
                     "import eventray.aggregates\nfrom eventray import projections\n"
                     "import importlib\nimportlib.import_module('eventray.serving.bank.app')\n"
                     "from eventray.platform import composition\n")
    assert domain_imports(probe) == ["2: eventray.sagas.transfer_money", "3: eventray.aggregates",
                                     "4: eventray.projections", "6: eventray.serving.bank.app"]
