"""The distribution's shape: stdlib `platform` is never shadowed; wheel and editable installs work."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"platform/_public": "eventray", "platform": "eventray.platform", "aggregates": "eventray.aggregates",
           "sagas": "eventray.sagas", "projections": "eventray.projections",
           "serving": "eventray.serving"}


def _sources() -> list[tuple[Path, str]]:
    """``(file, package of its folder)`` of every source file; platform/_public is ``eventray`` itself."""
    out = []
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if folder == "platform" and "_public" in path.relative_to(ROOT / folder).parts:
                continue
            out.append((path.relative_to(ROOT / folder), package))
    return out


def _modules() -> list[str]:
    """Every importable module of the distribution, from the source tree."""
    names = []
    for rel, package in _sources():
        parts = [p for p in rel.with_suffix("").parts if p != "__init__"]
        names.append(".".join([package, *parts]))
    return names


def test_platform_folder_has_no_init() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()


@pytest.mark.parametrize("how", [["-c"], ["-m", "pytest_stub"]])
def test_stdlib_platform_wins_from_the_repo_root(how: list[str], tmp_path: Path) -> None:
    code = "import platform, sys; assert platform.system() == 'Linux', platform; print(platform.__file__)"
    if how[0] == "-m":  # `python -m` puts the cwd first on sys.path, as pytest and Ray do
        (tmp_path / "pytest_stub.py").write_text(code)
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        args = [sys.executable, "-m", "pytest_stub"]
    else:
        env = dict(os.environ)
        args = [sys.executable, "-c", code]
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(Path(sysconfig.get_paths()["stdlib"]) / "platform.py")


def test_setuptools_package_list_covers_every_folder() -> None:
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    needed = {".".join([package, *rel.parent.parts]) for rel, package in _sources()}
    missing = sorted(needed - declared)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_wheel_install_imports_every_module(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    [wheel] = wheels.glob("eventray-*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    # -S: no site processing, so the editable install's finder is not loaded; the
    # dependencies come from this venv's site-packages, eventray only from the wheel.
    site = sysconfig.get_paths()["purelib"]
    code = (
        "import importlib, sys\n"
        f"mods = {_modules()!r}\n"
        "for m in mods:\n"
        "    mod = importlib.import_module(m)\n"
        f"    assert str(getattr(mod, '__file__', None) or list(mod.__path__)[0]).startswith({str(target)!r}), m\n"
        "import platform; assert platform.system() == 'Linux'\n"
        "print(len(mods))\n"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": f"{target}:{site}", "PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == len(_modules())
    assert (target / "eventray" / "platform" / "sql" / "001_snapshots.sql").exists()


def test_editable_install_picks_up_new_modules(tmp_path: Path) -> None:
    name = f"_probe_{uuid.uuid4().hex[:8]}"
    path = ROOT / "platform" / f"{name}.py"
    path.write_text("VALUE = 42\n")
    try:
        out = subprocess.run([sys.executable, "-c", f"from eventray.platform.{name} import VALUE; print(VALUE)"],
                             cwd=tmp_path, capture_output=True, text=True)
    finally:
        path.unlink()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"
