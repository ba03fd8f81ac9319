"""Small helpers shared by the middleware modules."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: scope keys the middleware stack sets for the app below it
PRINCIPAL = "eventray.principal"
REQUEST_ID = "eventray.request_id"


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (Serve's ``route_prefix`` is the ``root_path``)."""
    path: str = scope["path"]
    root = scope.get("root_path") or ""
    return path[len(root):] or "/" if root and path.startswith(root) else path


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lowercase bytes), or ``None``."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer an HTTP request with a JSON body (GraphQL-shaped errors)."""
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": payload})


def graphql_error(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}
