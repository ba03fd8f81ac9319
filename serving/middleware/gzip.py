"""gzip for responses over a minimum size, when the client accepts it.

Starlette's :class:`~starlette.middleware.gzip.GZipMiddleware` is already pure ASGI and
handles streaming bodies; this module pins its configuration for the ingress. Streams that
must reach the client event by event (the console's Server-Sent Events) are excluded by
path: a compressor holds small writes back until its buffer fills.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware as _StarletteGZip

from eventray.serving.middleware._asgi import ASGIApp, Receive, Scope, Send, route_path


class GZipMiddleware(_StarletteGZip):
    """Compresses responses of at least ``minimum_size`` bytes (level 5: cheap on CPU), except
    on the paths in ``exclude_paths`` (exact, or a prefix when it ends with ``/``)."""

    def __init__(self, app: ASGIApp, *, minimum_size: int = 1024, level: int = 5,
                 exclude_paths: tuple[str, ...] = ()) -> None:
        super().__init__(app, minimum_size=minimum_size, compresslevel=level)
        self._exclude = exclude_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._exclude and scope["type"] == "http" and _excluded(route_path(scope), self._exclude):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _excluded(path: str, exclude: tuple[str, ...]) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in exclude)
