"""GraphQL requests by operation: counts, errors and latency into the platform's metrics.

Sits inside the gzip layer (it reads plain JSON bodies) and outside auth and the rate limit
(their refusals count as errors of the operation). Also logs one JSON line per request with
its correlation id, the first hop that ``eventray logs --correlation`` follows.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from eventray.serving.middleware._asgi import REQUEST_ID, ASGIApp, Message, Receive, Scope, Send, route_path

log = logging.getLogger("eventray.graphql")

_OPERATION = re.compile(r"^\s*(query|mutation|subscription)\b\s*([A-Za-z_]\w*)?")
_FIRST_FIELD = re.compile(r"\{\s*(?:[A-Za-z_]\w*\s*:\s*)?([A-Za-z_]\w*)")
_MAX_BODY = 1 << 20


def operation_of(payload: Any) -> tuple[str, str]:
    """``(name, type)`` of a GraphQL request body: its operationName, else the named
    operation, else the first root field; type is query, mutation or subscription."""
    if not isinstance(payload, dict):
        return "invalid", "unknown"
    raw_query = payload.get("query")
    query: str = raw_query if isinstance(raw_query, str) else ""
    m = _OPERATION.match(query)
    op_type = m.group(1) if m else "query"
    name = payload.get("operationName") if isinstance(payload.get("operationName"), str) else None
    if not name and m and m.group(2):
        name = m.group(2)
    if not name:
        f = _FIRST_FIELD.search(query)
        name = f.group(1) if f else "anonymous"
    return name[:64], op_type


def error_codes(body: bytes) -> list[str]:
    """The ``extensions.code`` of each error of a JSON GraphQL response (``ERROR`` when absent)."""
    if b'"errors"' not in body:
        return []
    try:
        doc = json.loads(body)
    except ValueError:
        return ["INVALID_RESPONSE"]
    docs = doc if isinstance(doc, list) else [doc]
    return [str(((e or {}).get("extensions") or {}).get("code") or "ERROR")
            for d in docs if isinstance(d, dict) for e in (d.get("errors") or [])]


class OperationMetrics:
    """Records each HTTP GraphQL request's operation, latency and error codes."""

    def __init__(self, app: ASGIApp, *, path: str = "/graphql") -> None:
        self.app = app
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) != self._path or scope["method"] not in ("GET", "POST"):
            await self.app(scope, receive, send)
            return
        from eventray.platform.observability.metrics import observe_graphql

        start = time.perf_counter()
        request: list[bytes] = []
        response: list[bytes] = []
        size = 0

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request" and sum(map(len, request)) < _MAX_BODY:
                request.append(message.get("body", b""))
            return message

        async def send_and_keep(message: Message) -> None:
            nonlocal size
            if message["type"] == "http.response.body" and size < _MAX_BODY:
                chunk = message.get("body", b"")
                size += len(chunk)
                response.append(chunk)
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_keep)
        finally:
            name, op_type = self._operation(scope, b"".join(request))
            codes = error_codes(b"".join(response)) if size < _MAX_BODY else []
            seconds = time.perf_counter() - start
            try:
                observe_graphql(name, op_type, seconds, codes)
            except Exception as e:  # noqa: BLE001 - outside Ray (plain uvicorn) there is no agent
                log.debug("GraphQL metrics not recorded: %s", e)
            log.info("%s %s answered in %.1f ms%s", op_type, name, seconds * 1000,
                     f" with errors {','.join(codes)}" if codes else "",
                     extra={"correlation_id": scope.get(REQUEST_ID), "operation": name})

    @staticmethod
    def _operation(scope: Scope, body: bytes) -> tuple[str, str]:
        if scope["method"] == "GET":
            from urllib.parse import parse_qs

            qs = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
            return operation_of({k: v[0] for k, v in qs.items()})
        try:
            return operation_of(json.loads(body)) if body else ("empty", "unknown")
        except ValueError:
            return "invalid", "unknown"
