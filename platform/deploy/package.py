"""The code a deployment ships: the built wheel, unpacked into a Ray ``py_modules`` entry.

Ray uploads the package to the cluster's GCS and every worker imports it ahead of whatever
the node has installed, so the cluster runs exactly the version deployed. The wheel's
contents (not its zip timestamps) name the deployment, so deploying the same code again
changes nothing.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from eventray.platform.errors import ConfigurationError


@dataclass(frozen=True)
class Package:
    """A built wheel and where it was unpacked."""

    wheel: Path
    sha256: str
    module_dir: Path  # .../eventray, the py_modules entry


def package_digest(folder: Path) -> str:
    """sha256 over a package folder's ``.py`` files (paths and contents), to tell a changed app."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_wheel(source: Path, dist: Path) -> Path:
    """``pip wheel --no-deps`` of the project at ``source`` into ``dist``; the wheel's path."""
    if not (source / "pyproject.toml").exists():
        raise ConfigurationError(f"{source} has no pyproject.toml: run deploy from the eventray checkout, "
                                 "or pass --wheel PATH")
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.glob("eventray-*.whl"):
        old.unlink()
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(dist), str(source)], capture_output=True, text=True)
    if built.returncode != 0:
        raise ConfigurationError(f"building the eventray wheel from {source} failed:\n{built.stderr[-2000:]}")
    [wheel] = sorted(dist.glob("eventray-*.whl"))
    return wheel


def default_wheel(dist: Path) -> Path:
    """The wheel of the eventray this process runs: built from its source checkout (an editable
    install, or the current folder when it is one)."""
    import eventray

    here = Path(eventray.__file__).resolve().parent
    source = here.parent.parent if here.name == "_public" else Path.cwd()
    if not (source / "pyproject.toml").exists() and (Path.cwd() / "pyproject.toml").exists():
        source = Path.cwd()
    return build_wheel(source, dist)


def wheel_digest(wheel: Path) -> str:
    """sha256 over a wheel's members (names and contents, not their zip timestamps): the same
    code built twice names the same deployment."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            digest.update(name.encode())
            digest.update(zf.read(name))
    return digest.hexdigest()


def unpack(wheel: Path, cache: Path) -> Package:
    """Unpack ``wheel`` under ``cache/<sha256>`` once; the package to ship."""
    if not wheel.exists():
        raise ConfigurationError(f"no wheel at {wheel}")
    sha = wheel_digest(wheel)
    target = cache / sha[:16]
    if not (target / "eventray").is_dir():
        tmp = target.with_suffix(".tmp")
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        tmp.rename(target)
    return Package(wheel=wheel, sha256=sha, module_dir=target / "eventray")
