"""The README's "Your own domain" section, followed literally: each command it shows, in a fresh
folder, against the stack (``eventray new``, the package's tests, ``eventray serve``, a mutation
over HTTP)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The shell commands of the section's first ``bash`` block, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own domain", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's 'Your own domain' section has no bash block"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return [c for c in commands if c.strip()]


@pytest.mark.timeout(900)
def test_the_own_domain_section_works_as_written(stack_settings, tmp_path: Path) -> None:
    commands = readme_commands()
    assert [c.split()[:2] for c in commands[:4]] == [["eventray", "new"], ["python", "-m"], ["eventray", "dev"],
                                                     ["eventray", "serve"]]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTEST_CURRENT_TEST", None)
    outputs = []
    sys.path.insert(0, str(tmp_path))  # for removing the app afterwards
    try:
        _follow(commands, tmp_path, env, outputs)
    finally:
        if (tmp_path / "shop" / "app.py").exists():
            from _apps import remove_app

            remove_app("shop.app:app", "shop")
        sys.path.remove(str(tmp_path))
    assert (tmp_path / "shop" / "app.py").exists()
    assert re.search(r"\b5 passed\b", outputs[1]), outputs[1]
    assert "/shop/graphql" in outputs[3], outputs[3]
    assert json.loads(outputs[-1]) == {"data": {"createItem": {"__typename": "CommandSuccess"}}}


def _follow(commands: list[str], cwd: Path, env: dict[str, str], outputs: list[str]) -> None:
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{command!r} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
