"""The test tree imports cleanly as one pytest run (prepend import mode, several folders)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_test_module_imports_from_a_conftest() -> None:
    """Every folder's conftest.py is a module named ``conftest``: an import from it gets whichever
    folder's conftest came first. Shared helpers live in modules with names of their own."""
    offenders = [str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py")
                 if re.search(r"^\s*(from conftest import|import conftest)", p.read_text(), re.M)]
    assert not offenders, offenders


def test_helper_and_test_module_names_are_unique_across_folders() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name not in ("conftest.py", "__init__.py"))
    assert [n for n, count in names.items() if count > 1] == []
