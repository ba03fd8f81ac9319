"""The dev Ray head: ``ray start --head`` on 127.0.0.1, stopped without touching other clusters.

``ray stop`` would kill every Ray process of the user, including other engineers' local
clusters, so ``down`` terminates only the processes whose command line names this head's
temp directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from eventray.platform.errors import StackError
from eventray.platform.settings import Settings

from . import _proc
from .state import PieceStatus, StackState, home_digest

log = logging.getLogger("eventray.devstack.ray")

# Ray puts unix sockets under its temp dir; keep the path short (sun_path is 107 bytes)
_MAX_TEMP_DIR_LEN = 40

#: Serve flags a new dev head starts with (Ray reads them in the raylet's environment, so they
#: apply only to heads started after a change). Direct ingress: the GraphQL replica answers
#: HTTP on a port of its own (30000-31000) besides the proxy on 8000; in benchmarks.graphql it
#: cut the query's p50 at c=1 from ~11 ms to ~2 ms and doubled the deposit throughput at c=32.
#: The draining wait exists for an outside load balancer, which dev has none of: 30 s by default,
#: it would slow every redeploy. Ray's throughput bundle (``RAY_SERVE_THROUGHPUT_OPTIMIZED``) runs
#: the app's code on the replica's own event loop, where Ray resolves the shard calls' results,
#: instead of a thread of its own that every awaited call must cross; in benchmarks.graphql it
#: took a deposit's p50 at c=1 from 73 ms to 12 ms and doubled the deposits/s at c=32 (direct
#: ingress both times). The GraphQL app never blocks its loop (every resolver is async; blocking
#: work goes to threads). The bundle would also route a DeploymentHandle's requests on the loop
#: that first used it; a projection host calls the model deployments from a loop per batch
#: ("got Future ... attached to a different loop"), so the router keeps its own loop. A value
#: already in the environment wins (e.g. ``=0`` to opt out).
SERVE_ENV = {
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
}

#: Serve-managed HAProxy on the HTTP port (``RAY_SERVE_ENABLE_HA_PROXY``), forwarding to the
#: ingress replicas' direct ports, in place of Serve's Python proxy actor, which costs a process
#: hop and a Ray call per request: a deposit at c=1 through the proxy took 74 ms at p50 against
#: 48 ms straight to the replica's port, and at c=64 the proxy gave 54 deposits/s against 133.
#: HAProxy keeps one stable address for any number of replicas, as the proxy did. Its bind
#: speaks plain HTTP only, so a head whose ingress serves HTTPS (``EVENTRAY_HTTPS``) keeps
#: Serve's proxy, which terminates TLS. Its files go in a directory of the stack's own and its
#: ports follow the head's port, so that several stacks on one machine do not meet.
HAPROXY_PORT_OFFSETS = {"RAY_SERVE_HAPROXY_STATS_PORT": 21, "RAY_SERVE_HAPROXY_METRICS_PORT": 22,
                        # Serve's proxy, kept as HAProxy's fallback, on ports of its own
                        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": 23, "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": 24}


def serve_env(settings: Settings) -> dict[str, str]:
    """The Serve flags a new head starts with: :data:`SERVE_ENV`, and HAProxy unless the ingress is HTTPS."""
    from eventray.serving.settings import ServingSettings

    env = dict(SERVE_ENV)
    if ServingSettings().https:
        return env
    files = haproxy_dir(settings)
    env.update({
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files / "server-state"),
        **{name: str(settings.ray_port + offset) for name, offset in HAPROXY_PORT_OFFSETS.items()},
    })
    return env


#: quieter when idle (benchmarks/idle.py): Ray's log monitor globs the session's log folder every
#: 0.1 s while it holds fewer than 1,000 files (a tenth of a core here); from 0 files on it globs
#: every LOG_NAME_UPDATE_INTERVAL_S instead, and still forwards new lines of the files it has.
#: Serve's controller runs its control loop every 0.1 s (with a dozen autoscaled deployments,
#: the autoscaling metrics' aggregation alone was the largest idle cost of any process); every
#: 0.5 s it still answers a health check, a scaling decision or a deploy step well within what
#: those take. Every replica, router and proxy flush their cached request metrics every 0.1 s;
#: once a second is finer than any scrape.
IDLE_ENV = {
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    "LOG_NAME_UPDATE_INTERVAL_S": "5",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
}


def haproxy_dir(settings: Settings) -> Path:
    """Where Serve's HAProxy keeps its config, admin socket and server state: short, since Serve
    adds the node's id (56 characters) below it and HAProxy takes a socket path of 97 at most."""
    digest = home_digest(settings, 8)
    return Path("/tmp") / f"eventray-hap-{digest}"


def temp_dir(settings: Settings) -> Path:
    """The head's ``--temp-dir``: under home when the path is short enough, else under /tmp."""
    preferred = settings.home / "ray"
    if len(str(preferred)) <= _MAX_TEMP_DIR_LEN:
        return preferred
    digest = home_digest(settings, 10)
    return Path("/tmp") / f"eventray-ray-{digest}"


def _address(settings: Settings) -> str:
    return f"127.0.0.1:{settings.ray_port}"


def _gcs_pid(settings: Settings) -> int | None:
    pids = _proc.pids_matching("gcs_server", f"--gcs_server_port={settings.ray_port}",
                               str(temp_dir(settings)))
    return min(pids) if pids else None


def status(settings: Settings) -> PieceStatus:
    if settings.ray_address:
        return PieceStatus("ray", "external", settings.ray_address)
    pid = _gcs_pid(settings)
    detail = str(temp_dir(settings) / "session_latest" / "logs")
    if pid is None:
        return PieceStatus("ray", "stopped", _address(settings), detail=detail)
    return PieceStatus("ray", "running", _address(settings), pid, detail=detail)


def _ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise StackError("the `ray` command is not installed; run `pip install -e '.[dev]'`")
    return found


def start(settings: Settings) -> PieceStatus:
    """Start a local Ray head unless ours runs; wait until its GCS accepts connections."""
    pid = _gcs_pid(settings)
    started = False
    if pid is None:
        _proc.require_port(settings.ray_port, "the Ray head", "ray_port")
        _proc.require_port(settings.ray_client_server_port, "the Ray client server",
                           "ray_client_server_port")
        _proc.require_port(settings.ray_dashboard_agent_port, "the Ray dashboard agent",
                           "ray_dashboard_agent_port")
        _proc.require_port(settings.ray_metrics_export_port, "Ray's metrics export",
                           "ray_metrics_export_port")
        tmp = temp_dir(settings)
        tmp.mkdir(parents=True, exist_ok=True)
        args = [
            _ray_executable(), "start", "--head", f"--port={settings.ray_port}",
            "--node-ip-address=127.0.0.1", "--disable-usage-stats",
            "--include-dashboard=false", f"--temp-dir={tmp}",
            f"--ray-client-server-port={settings.ray_client_server_port}",
            f"--dashboard-agent-listen-port={settings.ray_dashboard_agent_port}",
            f"--metrics-export-port={settings.ray_metrics_export_port}",
        ]
        if settings.ray_num_cpus is not None:
            args.append(f"--num-cpus={settings.ray_num_cpus}")
        env = {**serve_env(settings), **IDLE_ENV, **os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
            for name in HAPROXY_PORT_OFFSETS:
                _proc.require_port(int(env[name]), f"Serve's HAProxy ({name})", "ray_port")
            Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]).mkdir(parents=True, exist_ok=True)
        # drivers here connect without a token (RAY_AUTH_MODE unset means disabled for them);
        # a head that turned token auth on by itself would refuse them
        env.setdefault("RAY_AUTH_MODE", "disabled")
        env.pop("RAY_ADDRESS", None)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        proc = _proc.run(args, what="starting the Ray head (ray start --head)", env=env, timeout=180)
        (settings.logs_dir / "ray-start.log").write_text(proc.stdout + proc.stderr)
        _proc.wait_until(lambda: _gcs_pid(settings) is not None, timeout=30,
                         what="the Ray head's GCS process")
        pid = _gcs_pid(settings)
        started = True
        log.info("started the Ray head (gcs pid %s) at %s", pid, _address(settings))
    _proc.wait_until(lambda: _proc.port_accepts(settings.ray_port), timeout=60,
                     what=f"Ray GCS at {_address(settings)}")
    StackState.update(settings.home, ray_address=_address(settings))
    return PieceStatus("ray", "running", _address(settings), pid, started,
                       str(temp_dir(settings) / "session_latest" / "logs"))


def stop(settings: Settings) -> bool:
    """Terminate this head's processes only; True when it was running."""
    was_running = _gcs_pid(settings) is not None
    ours = _proc.pids_matching(str(temp_dir(settings)))
    # the Ray client server names the GCS address, not the temp dir
    ours += _proc.pids_matching("ray.util.client.server", f":{settings.ray_port} ")
    pids = _proc.with_descendants(ours)
    if pids:
        # gcs_server and the autoscaler monitor ignore SIGTERM; `ray stop` also escalates
        _proc.terminate(pids, timeout=8, stubborn_ok=True)
    return was_running
