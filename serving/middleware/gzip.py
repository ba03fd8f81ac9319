"""gzip for responses over a minimum size, when the client accepts it.

Starlette's :class:`~starlette.middleware.gzip.GZipMiddleware` is already pure ASGI and
handles streaming bodies; this module pins its configuration for the ingress.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware as _StarletteGZip

from eventray.serving.middleware._asgi import ASGIApp


class GZipMiddleware(_StarletteGZip):
    """Compresses responses of at least ``minimum_size`` bytes (level 5: cheap on CPU)."""

    def __init__(self, app: ASGIApp, *, minimum_size: int = 1024, level: int = 5) -> None:
        super().__init__(app, minimum_size=minimum_size, compresslevel=level)
