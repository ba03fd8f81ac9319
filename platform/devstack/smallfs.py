"""Small filesystems of the stack's own, so the chaos faults ``disk-full-kafka`` and
``disk-full-postgres`` can fill a disk without touching the machine's.

With ``EVENTRAY_DATA_FS_MB=N`` (root: it mounts) the broker's log directory and PostgreSQL's
data directory each live on a tmpfs of ``N`` MiB that the stack mounts when it first starts
the piece (``ensure``) and unmounts when ``eventray dev down --purge`` deletes the data
(``release_all``). Each mount carries the stack's tag as its source (``eventray-smallfs-`` and a
digest of the stack's home), so the kernel's mount table itself says which filesystems are this
stack's: no record can fall out of step with it (two pieces mounting at once, a purge that could
not unmount, a home wiped by hand). ``fill`` and ``free`` act on a mount with the tag only, never
on another filesystem.

``fill`` writes a ballast file until the filesystem has no block left (the piece's next write
fails with ENOSPC); ``free`` deletes it. A tmpfs holds its pages in memory (and swap), so the
data is lost when it is unmounted or the machine restarts: this is for chaos stacks, whose
data is thrown away, not for data anyone keeps.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
from pathlib import Path

from eventray.platform.errors import StackError
from eventray.platform.settings import Settings

from . import _proc
from .state import home_digest

__all__ = ["BALLAST", "ensure", "fill", "free", "is_ours", "mounts", "release_all", "tag"]

log = logging.getLogger("eventray.devstack.smallfs")

BALLAST = ".eventray-chaos-ballast"
_CHUNK = 4 * 1024 * 1024


_MOUNTINFO = Path("/proc/self/mountinfo")
# the source name of the first releases' mounts: one under this stack's data directory is its own
_LEGACY_TAG = "eventray-chaos"


def tag(settings: Settings) -> str:
    """The source name this stack's small filesystems are mounted with."""
    digest = home_digest(settings, 12)
    return f"eventray-smallfs-{digest}"


def _unescape(field: str) -> str:
    # mountinfo writes a space, tab, newline and backslash as octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts(settings: Settings, *, mountinfo: Path = _MOUNTINFO) -> list[Path]:
    """The mount points of this stack's small filesystems, as the kernel's mount table lists them."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    mine = tag(settings)
    data = settings.data_dir.resolve()
    found = []
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        tail = fields[fields.index("-") + 1:]
        if len(fields) < 5 or len(tail) < 2 or tail[0] != "tmpfs":
            continue
        point, source = Path(_unescape(fields[4])), _unescape(tail[1])
        if source == mine or (source == _LEGACY_TAG and data in point.parents):
            found.append(point)
    return found


def is_ours(settings: Settings, path: Path) -> bool:
    """Whether ``path`` is a small filesystem this stack mounted (and it is mounted now)."""
    return path.resolve() in mounts(settings)


def ensure(settings: Settings, path: Path, mb: int, *, owner: str | None = None) -> None:
    """Mount a tmpfs of ``mb`` MiB at ``path`` unless this stack's is there already.

    Args:
        settings: the stack's settings (where the mount is recorded).
        path: the piece's data directory; it must be absent or empty (nothing is hidden).
        mb: the size in MiB.
        owner: the user who owns the filesystem's root (``postgres`` for its data directory).

    Raises:
        StackError: not root, ``path`` holds data already, or the mount failed.
    """
    if is_ours(settings, path):
        return
    if not _proc.is_root():
        raise StackError(f"EVENTRAY_DATA_FS_MB puts {path} on a small filesystem of the stack's own, which needs "
                         "root to mount; run as root or unset EVENTRAY_DATA_FS_MB")
    if os.path.ismount(path):
        raise StackError(f"{path} is a mount point this stack did not make; refusing to mount over it. Unmount "
                         f"it (umount {path}) or unset EVENTRAY_DATA_FS_MB")
    if path.exists() and any(path.iterdir()):
        raise StackError(f"{path} holds data already; a small filesystem would hide it. Delete the stack's data "
                         "first (eventray dev down --purge) or unset EVENTRAY_DATA_FS_MB")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={int(mb)}m,mode=0700"
    if owner is not None:
        import pwd

        pw = pwd.getpwnam(owner)
        options += f",uid={pw.pw_uid},gid={pw.pw_gid}"
    _proc.run(["mount", "-t", "tmpfs", "-o", options, tag(settings), str(path)],
              what=f"mounting a {mb} MiB tmpfs at {path}", timeout=30)
    log.info("mounted a %d MiB tmpfs at %s", mb, path)


def fill(settings: Settings, path: Path) -> tuple[Path, int]:
    """Fill this stack's small filesystem at ``path`` with a ballast file until no block is left.

    Returns:
        The ballast file and its size in bytes.

    Raises:
        StackError: ``path`` is not a small filesystem this stack mounted.
    """
    if not is_ours(settings, path):
        raise StackError(f"{path} is not a small filesystem of this stack (EVENTRAY_DATA_FS_MB, root); refusing "
                         "to fill it")
    ballast = path / BALLAST
    written = 0
    block = b"\0" * _CHUNK
    with open(ballast, "ab", buffering=0) as f:
        while True:
            try:
                n = f.write(block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[: max(1, len(block) // 16)]
                continue
            written += n or 0
    log.info("filled %s: a %d-byte ballast", path, written)
    return ballast, written


def free(ballast: Path) -> None:
    """Delete a ballast file ``fill`` wrote."""
    if ballast.name != BALLAST:
        raise StackError(f"{ballast} is not a chaos ballast file")
    ballast.unlink(missing_ok=True)


def release_all(settings: Settings) -> list[str]:
    """Unmount every small filesystem this stack mounted (its data goes with it); the paths unmounted.

    A filesystem still busy (a process left with a file open in it) is detached lazily
    (``umount -l``): it leaves the tree now and the kernel frees it when the last file closes.
    """
    done = []
    for mount in mounts(settings):
        result = subprocess.run(["umount", str(mount)], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            log.warning("umount %s failed (%s); detaching it lazily", mount, result.stderr.strip())
            result = subprocess.run(["umount", "-l", str(mount)], capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                log.warning("umount -l %s failed: %s", mount, result.stderr.strip())
                continue
        done.append(str(mount))
    return done
