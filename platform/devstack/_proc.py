"""Process, port, disk and package helpers shared by the dev stack's pieces."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from eventray.platform.errors import StackError

log = logging.getLogger("eventray.devstack")

GiB = 1024**3


def is_root() -> bool:
    return os.geteuid() == 0


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` (we could bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def who_listens(port: int) -> str:
    """A human hint naming the process that listens on ``port`` (best effort)."""
    ss = shutil.which("ss")
    if ss is None:
        return "unknown process"
    out = subprocess.run(
        [ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return out.splitlines()[0] if out else "unknown process"


def require_port(port: int, what: str, setting: str) -> None:
    """Raise a StackError that says what to do when ``port`` is taken by a foreign process."""
    if not port_is_free(port):
        raise StackError(
            f"{what} cannot start: port {port} on 127.0.0.1 is already in use by "
            f"{who_listens(port)}. Stop that process, or choose another port with "
            f"EVENTRAY_{setting.upper()}=<port>.",
            port=port,
        )


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child (ours, not yet reaped) counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def pids_matching(*needles: str) -> list[int]:
    """Pids of processes whose command line contains every one of ``needles``.

    This process and its ancestors (a shell whose command mentions a needle) never match.
    """
    found = []
    skip = _ancestors()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in skip:
            line = cmdline(int(entry.name))
            if line and all(n in line for n in needles):
                found.append(int(entry.name))
    return found


def with_descendants(pids: Sequence[int]) -> list[int]:
    """``pids`` plus every process descended from them (daemons reparent, workers do not)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(pids), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def terminate(pids: Sequence[int], *, timeout: float = 30.0, stubborn_ok: bool = False) -> None:
    """SIGTERM the processes, wait up to ``timeout``, then SIGKILL what is left."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        _reap()
        time.sleep(0.2)
    for pid in pids:
        if pid_alive(pid):
            log.log(logging.INFO if stubborn_ok else logging.WARNING,
                    "process %s ignored SIGTERM for %.0fs; killing it", pid, timeout)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _reap()


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.5,
    alive: Callable[[], bool] | None = None, log_file: Path | None = None,
) -> None:
    """Poll ``check`` until it returns True; raise a StackError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"{what} exited while starting.{tail_hint(log_file)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} was not ready after {timeout:.0f}s.{tail_hint(log_file)}")
        time.sleep(interval)


def tail(path: Path | None, lines: int = 25) -> str:
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def tail_hint(path: Path | None) -> str:
    text = tail(path)
    return f" Last lines of {path}:\n{text}" if text else ""


def run(args: Sequence[str], *, what: str, timeout: float = 300, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; raise a StackError with its output tail when it fails."""
    log.info("running %s", " ".join(args))
    try:
        proc = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False
        )
    except FileNotFoundError as e:
        raise StackError(f"{what}: {args[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise StackError(f"{what} did not finish within {timeout:.0f}s: {' '.join(args)}") from e
    if proc.returncode != 0:
        out = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise StackError(f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n{out}")
    return proc


def require_disk(path: Path, need_bytes: int, what: str) -> None:
    """Raise a StackError when the filesystem holding ``path`` has less than ``need_bytes`` free."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise StackError(
            f"not enough disk space for {what}: {free / GiB:.2f} GiB free on the filesystem of "
            f"{probe}, {need_bytes / GiB:.2f} GiB needed. Free some space or set EVENTRAY_HOME "
            "to a larger disk.",
            free_bytes=free,
        )


_apt_updated = False


def ensure_command(command: str, package: str, *, why: str, path_hint: Path | None = None) -> str:
    """Return the path of ``command``, installing ``package`` with apt-get when root.

    Raises:
        StackError: the command is missing and cannot be installed here; the message says how.
    """
    found = shutil.which(command) or (
        str(path_hint) if path_hint is not None and path_hint.exists() else None
    )
    if found:
        return found
    if not is_root() or shutil.which("apt-get") is None:
        raise StackError(
            f"{command} is needed {why} but is not installed. Install it with: "
            f"sudo apt-get install -y {package}  (or run `make deps` as root)."
        )
    apt_install([package])
    found = shutil.which(command) or (
        str(path_hint) if path_hint is not None and path_hint.exists() else None
    )
    if not found:
        raise StackError(f"apt-get installed {package} but {command} is still not on PATH")
    return found


def apt_install(packages: Sequence[str]) -> None:
    global _apt_updated
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        run(["apt-get", "update", "-q"], what="apt-get update", env=env, timeout=600)
        _apt_updated = True
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        what=f"apt-get install {' '.join(packages)}", env=env, timeout=900)
