"""The committed SDL is what the executable schema prints (``eventray schema``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_sdl_matches_eventray_schema():
    printed = subprocess.run([sys.executable, "-m", "eventray.platform.cli", "schema"], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
    assert printed == (ROOT / "serving/graphql/schema.graphql").read_text(), (
        "serving/graphql/schema.graphql is stale: run `eventray schema > serving/graphql/schema.graphql`")
