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


def test_a_directory_the_mount_table_does_not_list_is_not_ours(settings, tmp_path):
    target = tmp_path / "pg"
    target.mkdir()
    assert not smallfs.is_ours(settings, target)
    with pytest.raises(StackError):
        smallfs.fill(settings, target)


def test_the_mount_table_names_this_stacks_filesystems_by_their_tag(settings, tmp_path):
    data = settings.data_dir.resolve()
    other = Settings(home=tmp_path / "other")
    line = "{id} 1 0:{id} / {point} rw,relatime shared:1 - {fs} {source} rw,size=786432k\n"
    table = tmp_path / "mountinfo"
    table.write_text("".join([
        line.format(id=41, point=data / "kafka", fs="tmpfs", source=smallfs.tag(settings)),
        # a space in the path is written as \040
        line.format(id=42, point=str(data / "pg data").replace(" ", "\\040"), fs="tmpfs",
                    source=smallfs.tag(settings)),
        line.format(id=43, point=data / "postgres", fs="tmpfs", source="eventray-chaos"),  # an earlier release's
        line.format(id=44, point=tmp_path / "elsewhere", fs="tmpfs", source="eventray-chaos"),
        line.format(id=45, point=tmp_path / "theirs", fs="tmpfs", source=smallfs.tag(other)),
        line.format(id=46, point=data / "ext", fs="ext4", source=smallfs.tag(settings)),
        line.format(id=47, point="/dev/shm", fs="tmpfs", source="tmpfs"),
    ]))
    assert smallfs.mounts(settings, mountinfo=table) == [data / "kafka", data / "pg data", data / "postgres"]
    assert smallfs.mounts(other, mountinfo=table) == [tmp_path / "theirs"]
    assert smallfs.tag(settings) != smallfs.tag(other)


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
