"""Request ids: accepted from ``X-Request-ID`` when well formed, else generated; echoed on
the response and carried into commands as their correlation id."""

from __future__ import annotations

import re
import uuid

from eventray.serving.middleware._asgi import REQUEST_ID, ASGIApp, Message, Receive, Scope, Send, header

# printable ASCII without quotes or backslashes: safe in logs, headers and event envelopes
_VALID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


class RequestIdMiddleware:
    """Sets ``scope["eventray.request_id"]`` and the ``x-request-id`` response header.

    Args:
        echo: add the response header. Off under Ray Serve: its proxy already puts the
            client's id (or one it generated) on the request it forwards and echoes that
            same id on the response, so a second header would only duplicate it.
    """

    def __init__(self, app: ASGIApp, *, header_name: str = "x-request-id", echo: bool = True) -> None:
        self.app = app
        self._name = header_name.lower().encode()
        self._echo = echo

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = header(scope, self._name)
        request_id = given if given and _VALID.fullmatch(given) else uuid.uuid4().hex
        scope[REQUEST_ID] = request_id
        if scope["type"] == "websocket" or not self._echo:
            await self.app(scope, receive, send)
            return
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (self._name, encoded)]
            await send(message)

        await self.app(scope, receive, send_with_id)
