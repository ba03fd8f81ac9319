"""The committed SDL is what the executable schema prints (``eventray schema``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_sdl_matches_eventray_schema():
    printed = subprocess.run([sys.executable, "-m", "eventray.platform.cli", "schema", "--app", "eventray.serving.bank.app:app"], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
    assert printed == (ROOT / "serving/bank/schema.graphql").read_text(), (
        "serving/bank/schema.graphql is stale: run `eventray schema > serving/bank/schema.graphql`")
