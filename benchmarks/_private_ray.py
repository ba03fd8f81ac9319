"""A Ray instance of the benchmark's own, so Serve's process-wide flags can be switched.

Ray 2.60's ``RAY_SERVE_ENABLE_DIRECT_INGRESS`` and ``RAY_SERVE_ENABLE_HA_PROXY`` are read from
the environment of the Ray processes (raylet -> controller, proxy, replicas) when they start,
so trying them needs a Ray started with them. The shared dev head must not be restarted
(other engineers' actors and Serve apps run on it), so each trial starts a private instance:
``ray.init()`` with no address after setting the flags in ``os.environ``, with its own temp
dir and ports (Serve's proxy, the direct-ingress port range, HAProxy's stats/metrics ports,
admin socket and config file, the fallback proxy), and tears it down afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: the Serve flag sets the benchmark tries; each needs an instance of its own
FLAG_SETS: dict[str, dict[str, str]] = {
    "proxy": {},
    "direct": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    # Ray's throughput bundle (direct ingress, user code on the replica's main loop: no thread
    # hop per request, buffered request-path logs, no Serve logs to stderr, gRPC between
    # deployments) with HAProxy in front of the direct-ingress replicas: one instance serves
    # both the replica's own port and HAProxy's
    "tuned": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"},
}


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_base() -> int:
    """A base port whose block (base .. base+400) is free where the benchmark binds."""
    for _ in range(200):
        base = random.randrange(33000, 59000, 500)
        if all(_free(base + off) for off in (0, 1, 2, 3, 100, 200, 201, 300, 301, 302, 303)):
            return base
    raise RuntimeError("no free port block for a private Ray instance")


@dataclass(frozen=True)
class PrivateRay:
    """Addresses of a running private instance."""

    flags: str
    gcs_address: str
    proxy_port: int
    direct_ports: range
    temp_dir: Path

    def owns(self, pid: int) -> bool:
        """Whether process ``pid`` belongs to this instance (its environment names our temp dir)."""
        return _owned(self.temp_dir, pid)


def _owned(tmp: Path, pid: int) -> bool:
    try:
        return f"={tmp}/".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def _stop_leftovers(tmp: Path) -> None:
    """HAProxy is a child process of a Serve actor; it outlives the instance unless stopped."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit() and int(pid) != os.getpid() and (str(tmp) in args or _owned(tmp, int(pid))):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


@contextlib.contextmanager
def private_ray(flags: str, *, num_cpus: int = 8, haproxy_maxconn: int = 4096) -> Iterator[PrivateRay]:
    """Start a private Ray (and later Serve) with the Serve flag set ``flags``; stop it on exit."""
    import ray

    base = _port_base()
    tmp = Path(tempfile.mkdtemp(prefix="erb-", dir="/tmp"))  # short: Ray's unix sockets live below it
    env = {
        **FLAG_SETS[flags],
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(base),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(base + 50),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(base + 100),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(base + 150),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(base + 200),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(base + 201),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(base + 302),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(base + 303),
        "RAY_SERVE_HAPROXY_MAXCONN": str(haproxy_maxconn),
        # no outside load balancer to deregister from: redeploys need not wait 30 s
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(tmp / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(tmp / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(tmp),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(tmp / "server-state"),
    }
    saved = {k: os.environ.get(k) for k in [*env, "RAY_ADDRESS"]}
    os.environ.update(env)
    os.environ.pop("RAY_ADDRESS", None)
    try:
        ray.init(namespace="eventray", num_cpus=num_cpus, include_dashboard=False, _temp_dir=str(tmp / "r"),
                 logging_level=logging.WARNING, log_to_driver=False)
        try:
            yield PrivateRay(flags, ray.get_runtime_context().gcs_address, base + 300,
                             range(base, base + 51), tmp)
        finally:
            ray.shutdown()  # the whole private instance (Serve's controller, proxies, replicas) goes
            _stop_leftovers(tmp)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)
