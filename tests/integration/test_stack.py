"""`eventray dev up | status` against the real stack: idempotent, reports every piece,
leaves configured (external) services alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from rich.console import Console

from eventray.platform import devstack
from eventray.platform.devstack import _proc
from eventray.platform.settings import Settings

EVENTRAY = [sys.executable, "-m", "eventray.platform.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTRAY_")}
    env.update({k: v for k, v in os.environ.items() if k == "EVENTRAY_HOME"})
    env.update(extra)
    env["COLUMNS"] = "200"
    return env


def _postmasters() -> list[int]:
    return [p for p in _proc.pids_matching("postgres", "-D") if "bin/postgres" in _proc.cmdline(p)]


def test_second_up_is_a_quick_noop(stack_settings: Settings) -> None:
    t0 = time.monotonic()
    report = devstack.up(Settings(), console=Console(quiet=True))
    elapsed = time.monotonic() - t0
    assert report.started == ()
    assert [p.state for p in report.pieces] == ["running", "running", "running"]
    assert elapsed < 10, f"a no-op dev up took {elapsed:.1f}s"
    assert report.settings.database_url == stack_settings.database_url


def test_status_reports_each_piece(stack_settings: Settings) -> None:
    report = devstack.status()
    assert [p.name for p in report.pieces] == list(devstack.PIECES)
    for piece in report.pieces:
        assert piece.state == "running", piece
        assert piece.pid and _proc.pid_alive(piece.pid), piece
        assert piece.address
    out = subprocess.run([*EVENTRAY, "dev", "status"], env=_env(), capture_output=True,
                         text=True, check=True, timeout=60).stdout
    for name in devstack.PIECES:
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert "running" in line, out


def test_configured_database_is_external(stack_settings: Settings) -> None:
    before = _postmasters()
    env = _env(EVENTRAY_DATABASE_URL=str(stack_settings.database_url))
    script = (
        "import json; from rich.console import Console; from eventray.platform import devstack;"
        "r = devstack.up(console=Console(quiet=True));"
        "print(json.dumps({'started': r.started, 'postgres': r['postgres'].state,"
        " 'dsn': r.settings.dsn}))"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got == {"started": [], "postgres": "external", "dsn": stack_settings.dsn}
    status = subprocess.run([*EVENTRAY, "dev", "status"], env=env, capture_output=True,
                            text=True, check=True, timeout=60).stdout
    line = next(line for line in status.splitlines() if " postgres " in line)
    assert "external" in line, status
    assert _postmasters() == before, "a second PostgreSQL server was started"
