"""A request body limit: a larger body is answered 413 before the app reads any of it.

A declared ``Content-Length`` over the limit is refused at once. A body sent without one
(chunked) is read up to the limit and refused as soon as it passes it; the app then gets the
body it would have read, from memory, so it never sees a truncated request.
"""

from __future__ import annotations

from eventray.serving.middleware._asgi import (
    ASGIApp, Message, Receive, Scope, Send, graphql_error, header, send_json,
)


class BodyLimitMiddleware:
    """Refuses HTTP request bodies larger than ``max_bytes`` with 413 ``PAYLOAD_TOO_LARGE``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send: Send) -> None:
        await send_json(send, 413, graphql_error(
            f"the request body is larger than {self.max_bytes} bytes; send less per request", "PAYLOAD_TOO_LARGE"),
            [(b"connection", b"close")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the server rejects a malformed length itself
            if too_large:
                await self._too_large(send)
                return
            await self.app(scope, self._counting(receive), send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that stops a body longer than its declared length at the limit."""
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_bytes:
                    return {"type": "http.disconnect"}
            return message

        return counted
