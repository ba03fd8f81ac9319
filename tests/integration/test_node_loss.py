"""Node loss, run in a Python process of its own.

The scenario (``_node_loss_scenario.py``) builds a 3-node ``ray.cluster_utils.Cluster`` with its
own GCS. Started from a pytest process that has already been a driver of the dev cluster (and
of Serve), that cluster's nodes never started a worker; from a fresh process it runs as it
should. So this test runs the scenario with pytest in a subprocess and fails when it fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("_node_loss_scenario.py")


def test_losing_the_shard_node_loses_nothing_in_its_own_process(stack_settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(SCENARIO)],
        capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[2],
    )
    if out.returncode != 0:
        pytest.fail(f"the node-loss scenario failed:\n{out.stdout[-6000:]}\n{out.stderr[-3000:]}")
    assert "1 passed" in out.stdout, out.stdout[-2000:]
    print(*[line for line in out.stdout.splitlines() if line.startswith("failover:")], sep="\n")
