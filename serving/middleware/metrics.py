"""Request counts and latency per path, and open WebSockets, into the replica's :class:`Metrics`."""

from __future__ import annotations

import time

from eventray.serving.metrics import Metrics
from eventray.serving.middleware._asgi import ASGIApp, Message, Receive, Scope, Send, route_path

_KNOWN_PATHS = ("/graphql", "/healthz", "/metrics")


class MetricsMiddleware:
    """Counts requests and their latency by (known) path; counts open WebSockets."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            self.metrics.websockets_active += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.metrics.websockets_active -= 1
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            path = route_path(scope)
            path = path if path in _KNOWN_PATHS else "other"
            self.metrics.observe_request(path, scope["method"], status, time.perf_counter() - start)
