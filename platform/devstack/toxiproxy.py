"""Opt-in TCP proxy in front of the dev broker, so `eventray chaos delay-kafka` can slow it down.

``tc netem`` needs a kernel with the netem qdisc, which many container and CI kernels lack.
With ``EVENTRAY_KAFKA_DELAY_PROXY=1`` the stack instead runs Shopify's Toxiproxy
(``github.com/Shopify/toxiproxy``, built with ``go install`` into the stack's home) on the
broker's client port, and the broker listens two ports higher and advertises the proxy's
address, so every client connection, the shards' transactional producers included, passes
through it. ``set_delay`` adds (or removes) a ``latency`` toxic on the client-to-broker
direction through Toxiproxy's HTTP API, on the stack's own proxy only.

Ports: the proxy listens on ``kafka_port``, the broker on ``kafka_port + 2``, Toxiproxy's API
on ``kafka_port + 3`` (all on 127.0.0.1).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from eventray.platform.errors import StackError
from eventray.platform.settings import Settings

from . import _proc

log = logging.getLogger("eventray.devstack.toxiproxy")

VERSION = "2.5.0"
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
PROXY = "kafka"
TOXIC = "eventray-delay"


def broker_port(settings: Settings) -> int:
    """The port the broker itself listens on behind the proxy."""
    return settings.kafka_port + 2


def api_port(settings: Settings) -> int:
    return settings.kafka_port + 3


def _dir(settings: Settings) -> Path:
    return settings.home / f"toxiproxy-{VERSION}"


def _pid_file(settings: Settings) -> Path:
    return settings.home / "run" / "toxiproxy.pid"


def binary(settings: Settings) -> Path:
    """The Toxiproxy server, built with ``go install`` on first use.

    Raises:
        StackError: Go is missing (and cannot be installed here) or the build failed.
    """
    target = _dir(settings) / "bin" / "server"
    if target.exists():
        return target
    go = _proc.ensure_command("go", "golang-go", why="to build Toxiproxy for `eventray chaos delay-kafka`",
                              path_hint=Path("/usr/local/go/bin/go"))
    env = {**os.environ, "GOBIN": str(target.parent), "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    log.info("building Toxiproxy %s with %s", VERSION, go)
    try:
        _proc.run([go, "install", f"{MODULE}@v{VERSION}"], what=f"building Toxiproxy {VERSION} (go install)",
                  env=env, timeout=600)
    except StackError as e:
        raise StackError(f"{e.message}\nIs the Go module proxy (https://proxy.golang.org) reachable? "
                         "Set GOPROXY to a mirror otherwise.") from e
    if not target.exists():
        raise StackError(f"go install finished but {target} does not exist")
    return target


def running_pid(settings: Settings) -> int | None:
    pid = _proc.read_pid(_pid_file(settings))
    if _proc.pid_alive(pid) and str(_dir(settings)) in _proc.cmdline(pid or 0):
        return pid
    return None


def start(settings: Settings) -> int:
    """Start this stack's proxy unless it runs (proxy ``kafka``: client port -> broker port)."""
    pid = running_pid(settings)
    if pid is not None:
        return pid
    server = binary(settings)
    _proc.require_port(settings.kafka_port, "Kafka's delay proxy", "kafka_port")
    _proc.require_port(api_port(settings), "Toxiproxy's API (kafka_port + 3)", "kafka_port")
    run = settings.home / "run"
    run.mkdir(parents=True, exist_ok=True)
    config = run / "toxiproxy.json"
    config.write_text(json.dumps([{"name": PROXY, "listen": f"127.0.0.1:{settings.kafka_port}",
                                   "upstream": f"127.0.0.1:{broker_port(settings)}", "enabled": True}]))
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.logs_dir / "toxiproxy.log", "ab") as out:
        proc = subprocess.Popen([str(server), "-host", "127.0.0.1", "-port", str(api_port(settings)),
                                 "-config", str(config)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _pid_file(settings).write_text(f"{proc.pid}\n")
    _proc.wait_until(lambda: _proc.port_accepts(settings.kafka_port), timeout=30,
                     what=f"Toxiproxy on 127.0.0.1:{settings.kafka_port}", alive=lambda: _proc.pid_alive(proc.pid),
                     log_file=settings.logs_dir / "toxiproxy.log")
    log.info("started Toxiproxy (pid %s): 127.0.0.1:%d -> 127.0.0.1:%d", proc.pid, settings.kafka_port,
             broker_port(settings))
    return proc.pid


def stop(settings: Settings) -> bool:
    pid = running_pid(settings)
    _pid_file(settings).unlink(missing_ok=True)
    if pid is None:
        return False
    _proc.terminate([pid], timeout=10)
    return True


def set_delay(settings: Settings, ms: int) -> None:
    """Delay each client-to-broker byte stream by ``ms`` (0 removes the delay). Only this stack's proxy."""
    set_toxic(settings, TOXIC, "latency" if ms > 0 else None, {"latency": int(ms), "jitter": 0})


def set_toxic(settings: Settings, name: str, kind: str | None, attributes: dict[str, int], *,
              toxicity: float = 1.0, stream: str = "upstream") -> None:
    """Replace the toxic ``name`` on this stack's proxy with one of type ``kind`` (None: remove it).

    Args:
        settings: the stack's settings (its own Toxiproxy only).
        name: the toxic's name, unique per fault.
        kind: a Toxiproxy toxic type (``latency``, ``reset_peer``, ``timeout``, ...), or None.
        attributes: the toxic's attributes.
        toxicity: the share of connections it acts on.
        stream: ``upstream`` (client to broker) or ``downstream``.
    """
    import httpx

    if running_pid(settings) is None:
        raise StackError(f"no Toxiproxy started by this stack runs (home {settings.home}); start the stack "
                         "with EVENTRAY_KAFKA_DELAY_PROXY=1 (`eventray dev up`)")
    api = f"http://127.0.0.1:{api_port(settings)}/proxies/{PROXY}/toxics"
    try:
        with httpx.Client(timeout=10) as client:
            client.delete(f"{api}/{name}")  # 404 when there is none
            if kind is not None:
                r = client.post(api, json={"name": name, "type": kind, "stream": stream, "toxicity": toxicity,
                                           "attributes": attributes})
                r.raise_for_status()
    except httpx.HTTPError as e:
        raise StackError(f"Toxiproxy's API at {api} failed: {e}") from e

