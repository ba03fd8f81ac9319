"""The chaos stack's small filesystems refuse what is not theirs (no mount here: the chaos tests mount)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventray.platform.devstack import smallfs
from eventray.platform.errors import StackError
from eventray.platform.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_fill_refuses_a_directory_the_stack_did_not_mount(settings, tmp_path):
    target = tmp_path / "kafka"
    target.mkdir()
    with pytest.raises(StackError, match="not a small filesystem of this stack"):
        smallfs.fill(settings, target)
    assert list(target.iterdir()) == []  # nothing written


def test_a_recorded_path_that_is_not_mounted_is_not_ours(settings, tmp_path):
    target = tmp_path / "pg"
    target.mkdir()
    smallfs._save(settings, [str(target.resolve())])
    assert not smallfs.is_ours(settings, target)
    with pytest.raises(StackError):
        smallfs.fill(settings, target)


def test_ensure_refuses_to_hide_data_and_needs_root(settings, tmp_path, monkeypatch):
    full = tmp_path / "full"
    full.mkdir()
    (full / "meta.properties").write_text("x")
    monkeypatch.setattr(smallfs._proc, "is_root", lambda: True)
    with pytest.raises(StackError, match="holds data already"):
        smallfs.ensure(settings, full, 64)
    monkeypatch.setattr(smallfs._proc, "is_root", lambda: False)
    with pytest.raises(StackError, match="needs root"):
        smallfs.ensure(settings, tmp_path / "empty", 64)


def test_free_deletes_only_a_ballast_file(tmp_path):
    other = tmp_path / "00000000000000000000.log"
    other.write_text("records")
    with pytest.raises(StackError, match="not a chaos ballast"):
        smallfs.free(other)
    assert other.exists()
    ballast = tmp_path / smallfs.BALLAST
    ballast.write_bytes(b"\0" * 10)
    smallfs.free(ballast)
    assert not ballast.exists()


def test_the_settings_reject_a_filesystem_too_small_for_a_broker():
    with pytest.raises(ValueError):
        Settings(data_fs_mb=8)
