"""The code a deployment ships: the built wheel, unpacked into a Ray ``py_modules`` entry.

Ray uploads the package to the cluster's GCS and every worker imports it ahead of whatever
the node has installed, so the cluster runs exactly the version deployed. The wheel's
sha256 names the deployment, so a second ``deploy`` of the same build changes nothing.
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

    def runtime_env(self) -> dict[str, object]:
        return {"py_modules": [str(self.module_dir)]}


def build_wheel(source: Path, dist: Path) -> Path:
    """``pip wheel --no-deps`` of the project at ``source`` into ``dist``; the wheel's path."""
    if not (source / "pyproject.toml").exists():
        raise ConfigurationError(f"{source} has no pyproject.toml: run deploy from the eventray checkout, "
                                 "or pass --wheel PATH")
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.glob("eventray-*.whl"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(source)], check=True)
    [wheel] = sorted(dist.glob("eventray-*.whl"))
    return wheel


def unpack(wheel: Path, cache: Path) -> Package:
    """Unpack ``wheel`` under ``cache/<sha256>`` once; the package to ship."""
    if not wheel.exists():
        raise ConfigurationError(f"no wheel at {wheel}")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    target = cache / sha[:16]
    if not (target / "eventray").is_dir():
        tmp = target.with_suffix(".tmp")
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        tmp.rename(target)
    return Package(wheel=wheel, sha256=sha, module_dir=target / "eventray")
