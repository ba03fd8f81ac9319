"""A separate stack for chaos (own EVENTRAY_HOME and ports), never the shared dev stack.

Everything that talks to Ray runs in subprocesses with the separate stack's environment, so
this pytest process never connects to either Ray cluster.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventray.platform.chaos.stack import chaos_env

_HERE = Path(__file__).resolve().parent
HOME = Path(os.environ.get("EVENTRAY_CHAOS_HOME", "/tmp/eventray-chaos"))
BASE = int(os.environ.get("EVENTRAY_CHAOS_PORT_BASE", "29000"))
EVENTRAY = str(Path(sys.executable).parent / "eventray")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.chaos)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTRAY_")}
    return {**env, **chaos_env(HOME, base=BASE, netns_ip=os.environ.get("EVENTRAY_CHAOS_NETNS_IP"))}


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``eventray ARGS`` against the chaos stack."""
    return subprocess.run([EVENTRAY, *args], env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def cli():
    """``cli(*args)`` runs ``eventray ARGS`` against the chaos stack."""
    return run_cli


@pytest.fixture(scope="session")
def chaos_stack() -> Iterator[dict[str, Any]]:
    """The separate stack with shards, account_balances, TransferMoney coordinators and GraphQL."""
    env = _env()
    stack = [sys.executable, "-m", "eventray.platform.chaos.stack"]
    proc = subprocess.run([*stack, "up", "--graphql"], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        subprocess.run([*stack, "down"], env=env, capture_output=True, timeout=300)
        pytest.fail(f"the chaos stack did not come up:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", pytrace=False)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["env"] = env
    info["verify"] = ssl.create_default_context(cafile=info["ca"])  # the ingress serves the dev CA's certificate
    info["metrics"] = f"http://127.0.0.1:{env['EVENTRAY_RAY_METRICS_EXPORT_PORT']}/metrics"
    try:
        yield info
    finally:
        subprocess.run([*stack, "down"], env=env, capture_output=True, timeout=300)
