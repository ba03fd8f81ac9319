"""The optional plain-HTTP port of an HTTPS ingress: it redirects, and serves nothing else.

With ``EVENTRAY_HTTPS`` on, the ingress (Serve's proxy on ``http_port`` and the replicas'
direct-ingress ports) serves HTTPS alone. ``EVENTRAY_HTTP_REDIRECT_PORT`` adds a plain-HTTP
port for people and links that still say ``http://``:

* GET and HEAD get a 308 to the same path and query on ``https://<their host>:<http_port>``;
* every other method gets a 403 that names the HTTPS address: a body sent in clear (a mutation,
  a token) has already crossed the wire, so it is never forwarded, and the client is told to
  change the URL rather than being taught that plaintext works;
* a WebSocket is closed (1008, policy violation).

It runs in a detached Ray actor, ``eventray-http-redirect-<port>``, on the node that deploys
(where ``eventray deploy`` runs); in front of a cluster, a load balancer usually does this.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ray

from eventray.platform.runtime.actors import NAMESPACE

ASGIApp = Any


def redirect_app(https_port: int) -> ASGIApp:
    """The ASGI app of the redirect port, pointing at HTTPS on ``https_port``."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, RedirectResponse

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return
        request = Request(scope)
        target = str(request.url.replace(scheme="https", port=https_port))
        if request.method in ("GET", "HEAD"):
            response: Any = RedirectResponse(target, status_code=308)
        else:
            response = PlainTextResponse(
                f"this port is plain HTTP and only redirects; send {request.method} requests to {target} (HTTPS)",
                status_code=403)
        response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)

    return app


@ray.remote(num_cpus=0)
class HTTPRedirect:
    """uvicorn on ``host:port`` with :func:`redirect_app`, on a thread of the actor."""

    def __init__(self, host: str, port: int, https_port: int) -> None:
        import uvicorn

        config = uvicorn.Config(redirect_app(https_port), host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="eventray-http-redirect", daemon=True)
        self._thread.start()

    def ready(self, wait_s: float = 10.0) -> bool:
        """True once the port listens; False when uvicorn gave up (the port is taken) or ``wait_s`` passed."""
        deadline = time.monotonic() + wait_s
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(self._server.started)


def actor_name(port: int) -> str:
    return f"eventray-http-redirect-{port}"


def start_redirect(host: str, port: int, https_port: int) -> None:
    """Start (or keep) the redirect actor for ``port``.

    Raises:
        ServiceUnavailable: the port did not start listening (another process holds it).
    """
    from eventray.platform.errors import ServiceUnavailable

    actor = HTTPRedirect.options(  # type: ignore[attr-defined]  # added by @ray.remote
        name=actor_name(port), namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
        host, port, https_port)
    if not ray.get(actor.ready.remote()):
        ray.kill(actor)
        raise ServiceUnavailable(f"the HTTP redirect could not listen on {host}:{port} (is the port taken?); "
                                 "free it or change EVENTRAY_HTTP_REDIRECT_PORT")


def stop_redirect(port: int) -> None:
    """Stop the redirect actor of ``port``, if there is one."""
    try:
        ray.kill(ray.get_actor(actor_name(port), namespace=NAMESPACE))
    except ValueError:
        pass
