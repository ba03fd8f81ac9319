"""Inside a Ray worker whose working directory is the repo root, ``platform`` is the stdlib's.

A Ray ``working_dir`` puts the directory on the worker's ``sys.path``, the case that would let
a regular package called ``platform`` shadow the standard library. It is a job-level option,
so the check runs as a driver of its own, in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DRIVER = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", runtime_env={
    "working_dir": sys.argv[2],
    "excludes": [".venv/", ".git/", "build/", "benchmarks/results/", "dist/", "*.whl"]})

@ray.remote(num_cpus=0)
def which():
    import os, sys, platform
    import eventray.platform.settings  # the eventray package imports beside it
    return {"file": platform.__file__, "system": platform.system(), "cwd": os.getcwd(),
            "repo_on_path": any(os.path.isdir(os.path.join(p or ".", "platform")) for p in sys.path),
            "has_folder": os.path.isdir("platform")}

print(json.dumps(ray.get(which.remote(), timeout=300)))
"""


def test_stdlib_platform_inside_a_ray_worker_with_the_repo_as_working_dir(stack_settings) -> None:
    out = subprocess.run([sys.executable, "-c", DRIVER, stack_settings.ray_address, str(ROOT)],
                         capture_output=True, text=True, timeout=600, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["has_folder"] and seen["repo_on_path"], seen  # the shadowing setup is really there
    assert seen["system"] == "Linux"
    assert seen["file"] == str(Path(sysconfig.get_paths()["stdlib"]) / "platform.py"), seen
