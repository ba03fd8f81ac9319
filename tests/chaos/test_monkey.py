"""The seeded chaos monkey on the separate stack: 45 s in `make test`, 10 minutes in `make chaos`
(EVENTRAY_MONKEY_DURATION)."""

from __future__ import annotations

import os
import re

import pytest


DURATION = float(os.environ.get("EVENTRAY_MONKEY_DURATION", "45"))
SEED = int(os.environ.get("EVENTRAY_MONKEY_SEED", "7"))


@pytest.mark.timeout(DURATION + 900)  # the faults, then the invariant checks (pyproject's 600 s is per test)
def test_monkey_loses_nothing(cli, chaos_stack) -> None:
    out = cli("chaos", "monkey", "--duration", str(DURATION), "--seed", str(SEED), timeout=DURATION + 900)
    print(out.stdout)
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"(\d+) faults, 0 lost, 0 duplicated, 0 mismatched", last)
    assert m and int(m.group(1)) > 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
