"""Opt-in TCP proxies in front of the dev broker and the dev PostgreSQL, for the chaos faults.

``tc netem`` needs a kernel with the netem qdisc, which many container and CI kernels lack.
With ``EVENTRAY_KAFKA_DELAY_PROXY=1`` the stack instead runs Shopify's Toxiproxy
(``github.com/Shopify/toxiproxy``, built with ``go install`` into the stack's home) on the
broker's client port, and the broker listens two ports higher and advertises the proxy's
address, so every client connection, the shards' transactional producers included, passes
through it. ``set_delay`` adds (or removes) a ``latency`` toxic on the client-to-broker
direction through Toxiproxy's HTTP API, on the stack's own proxy only.

With ``EVENTRAY_POSTGRES_PROXY=1`` the same Toxiproxy server also proxies PostgreSQL: clients
connect to ``postgres_port + 2`` (the effective settings' DSN says so), the server listens on
its own port, and ``set_enabled(settings, False, proxy=POSTGRES)`` cuts every connection and
refuses new ones (``eventray chaos partition-postgres``). The dev stack's own connections
(migrations aside) go straight to the server.

Ports: the Kafka proxy listens on ``kafka_port``, the broker on ``kafka_port + 2``, Toxiproxy's
API on ``kafka_port + 3``, the PostgreSQL proxy on ``postgres_port + 2`` (all on 127.0.0.1).
One server holds both proxies; each piece adds its own when it starts and removes it when it
stops, and ``eventray dev down`` stops the server.
"""

from __future__ import annotations

import fcntl
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
POSTGRES = "postgres"
TOXIC = "eventray-delay"


def broker_port(settings: Settings) -> int:
    """The port the broker itself listens on behind the proxy."""
    return settings.kafka_port + 2


def api_port(settings: Settings) -> int:
    return settings.kafka_port + 3


def postgres_proxy_port(settings: Settings) -> int:
    """The port PostgreSQL's clients connect to when it runs behind the proxy."""
    return settings.postgres_port + 2


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
    """Start this stack's proxy server unless it runs, with the Kafka proxy (client port -> broker port)."""
    return ensure_proxy(settings, PROXY, settings.kafka_port, broker_port(settings))


def ensure_proxy(settings: Settings, name: str, listen: int, upstream: int) -> int:
    """This stack's Toxiproxy server (started unless it runs) with proxy ``name``: 127.0.0.1:``listen``
    -> 127.0.0.1:``upstream`` (created, or re-pointed when its upstream differs). Returns the pid."""
    run = settings.home / "run"
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "toxiproxy.lock", "w") as lock:  # the broker and PostgreSQL start in parallel
        fcntl.flock(lock, fcntl.LOCK_EX)
        pid = running_pid(settings) or _start_server(settings)
        current = _proxies(settings).get(name)
        want = {"name": name, "listen": f"127.0.0.1:{listen}", "upstream": f"127.0.0.1:{upstream}",
                "enabled": True}
        if current is None or current.get("upstream") != want["upstream"] or current.get("listen") != want["listen"]:
            if current is not None:
                _api(settings, "delete", f"/proxies/{name}")
            else:
                _proc.require_port(listen, f"Toxiproxy's {name} proxy", f"{name} port")
            _api(settings, "post", "/proxies", json=want)
        elif not current.get("enabled", True):
            _api(settings, "post", f"/proxies/{name}", json={"enabled": True})
    _proc.wait_until(lambda: _proc.port_accepts(listen), timeout=30, what=f"Toxiproxy's {name} proxy on {listen}",
                     log_file=settings.logs_dir / "toxiproxy.log")
    log.info("Toxiproxy (pid %s) proxies %s: 127.0.0.1:%d -> 127.0.0.1:%d", pid, name, listen, upstream)
    return pid


def remove_proxy(settings: Settings, name: str) -> bool:
    """Remove proxy ``name`` (closing its connections and its port); the server goes on. True when it was there."""
    if running_pid(settings) is None or name not in _proxies(settings):
        return False
    _api(settings, "delete", f"/proxies/{name}")
    return True


def set_enabled(settings: Settings, enabled: bool, *, proxy: str) -> None:
    """Disable proxy ``proxy`` (every connection through it is closed, new ones refused) or enable it again."""
    _require_running(settings)
    _api(settings, "post", f"/proxies/{proxy}", json={"enabled": bool(enabled)})


def _start_server(settings: Settings) -> int:
    server = binary(settings)
    _proc.require_port(api_port(settings), "Toxiproxy's API (kafka_port + 3)", "kafka_port")
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.logs_dir / "toxiproxy.log", "ab") as out:
        proc = subprocess.Popen([str(server), "-host", "127.0.0.1", "-port", str(api_port(settings))],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    _pid_file(settings).write_text(f"{proc.pid}\n")
    _proc.wait_until(lambda: _proc.port_accepts(api_port(settings)), timeout=30,
                     what=f"Toxiproxy's API on 127.0.0.1:{api_port(settings)}", alive=lambda: _proc.pid_alive(proc.pid),
                     log_file=settings.logs_dir / "toxiproxy.log")
    log.info("started Toxiproxy (pid %s), API on 127.0.0.1:%d", proc.pid, api_port(settings))
    return proc.pid


def _proxies(settings: Settings) -> dict[str, dict]:
    found = _api(settings, "get", "/proxies")
    return found if isinstance(found, dict) else {}


def _require_running(settings: Settings) -> None:
    if running_pid(settings) is None:
        raise StackError(f"no Toxiproxy started by this stack runs (home {settings.home}); start the stack "
                         "with EVENTRAY_KAFKA_DELAY_PROXY=1 or EVENTRAY_POSTGRES_PROXY=1 (`eventray dev up`)")


def _api(settings: Settings, method: str, path: str, **kw: object) -> object:
    import httpx

    url = f"http://127.0.0.1:{api_port(settings)}{path}"
    try:
        with httpx.Client(timeout=10) as client:
            r = client.request(method.upper(), url, **kw)  # type: ignore[arg-type]
            r.raise_for_status()
            return r.json() if r.content else None
    except httpx.HTTPError as e:
        raise StackError(f"Toxiproxy's API at {url} failed: {e}") from e
    except ValueError:  # an answer that is not JSON
        return None


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
              toxicity: float = 1.0, stream: str = "upstream", proxy: str = PROXY) -> None:
    """Replace the toxic ``name`` on this stack's proxy with one of type ``kind`` (None: remove it).

    Args:
        settings: the stack's settings (its own Toxiproxy only).
        name: the toxic's name, unique per fault.
        kind: a Toxiproxy toxic type (``latency``, ``reset_peer``, ``timeout``, ...), or None.
        attributes: the toxic's attributes.
        toxicity: the share of connections it acts on.
        stream: ``upstream`` (client to server) or ``downstream``.
        proxy: the proxy (``PROXY``: the broker's, ``POSTGRES``).
    """
    _require_running(settings)
    toxics = f"/proxies/{proxy}/toxics"
    present = _api(settings, "get", toxics)
    if isinstance(present, list) and name in {t.get("name") for t in present if isinstance(t, dict)}:
        _api(settings, "delete", f"{toxics}/{name}")
    if kind is not None:
        _api(settings, "post", toxics, json={"name": name, "type": kind, "stream": stream, "toxicity": toxicity,
                                             "attributes": attributes})
