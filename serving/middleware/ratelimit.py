"""Per-subject token-bucket rate limiting; an empty bucket answers 429 with Retry-After.

Buckets live in the replica's memory: with N replicas a subject gets up to N times the
rate. Keyed by the authenticated subject, or by client address when anonymous.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from eventray.serving.middleware._asgi import (
    PRINCIPAL, ASGIApp, Receive, Scope, Send, graphql_error, route_path, send_json,
)


class TokenBuckets:
    """Token buckets by key, ``rate`` tokens per second up to ``burst``; least recently used
    keys are forgotten beyond ``max_keys`` (a forgotten key starts full again)."""

    def __init__(self, *, rate: float, burst: int, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


class RateLimitMiddleware:
    """Charges one token per request (or WebSocket handshake) to the caller's bucket."""

    def __init__(self, app: ASGIApp, *, rate: float, burst: int, protected_prefix: str = "/graphql") -> None:
        self.app = app
        self.buckets = TokenBuckets(rate=rate, burst=burst)
        self._prefix = protected_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not route_path(scope).startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        principal = scope.get(PRINCIPAL)
        if principal is not None and principal.subject:
            key = principal.rate_key
        else:
            client = scope.get("client") or ("?", 0)
            key = f"addr:{client[0]}"
        wait = self.buckets.take(key)
        if wait > 0:
            retry_after = str(max(1, math.ceil(wait))).encode()
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4429})
                return
            await send_json(send, 429, graphql_error("rate limit exceeded; retry later", "RATE_LIMITED"),
                            [(b"retry-after", retry_after)])
            return
        await self.app(scope, receive, send)
