"""An OAuth2 authorization server's signing keys, fetched from its JWKS endpoint and cached.

Keys are chosen by ``kid``. They are refetched when the cache is older than ``jwks_cache_s``,
and when a token names a ``kid`` the cache lacks (the server rotated its keys), at most once
per ``jwks_refresh_min_s`` so that tokens with made-up key ids cannot make the replica hammer
the server. A failed fetch keeps the keys it had and logs why.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from typing import Any

import httpx
import jwt

from eventray.platform.errors import ConfigurationError

log = logging.getLogger("eventray.serving.jwks")


class JwksUnavailable(Exception):
    """The JWKS endpoint could not be read and no keys are cached."""


class JwksKeys:
    """The RS256 verification keys of one JWKS URL, by key id.

    Args:
        url: the JWKS endpoint (``https://issuer/.well-known/jwks.json``).
        cache_s: how long a fetched key set is used before it is fetched again.
        refresh_min_s: the least time between two fetches that unknown key ids trigger.
        timeout_s: the HTTP timeout of one fetch.
        verify: the TLS verification of the fetch: True (the system's trust store) or a context
            holding the CA that signed the endpoint's certificate.
    """

    def __init__(self, url: str, *, cache_s: float = 300.0, refresh_min_s: float = 30.0,
                 timeout_s: float = 5.0, verify: bool | ssl.SSLContext = True) -> None:
        self._url = url
        self._cache_s = cache_s
        self._refresh_min_s = refresh_min_s
        self._timeout_s = timeout_s
        self._verify = verify
        self._keys: dict[str, Any] = {}
        self._raw: dict[str, str] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = threading.Lock()
        #: increments each time the key set changes, so holders of verified tokens can drop them
        self.generation = 0
        self.fetches = 0

    def key(self, kid: str | None) -> Any | None:
        """The key named ``kid`` (refetching the set when it is unknown, rate-limited), or None."""
        now = time.monotonic()
        if now - self._fetched_at > self._cache_s:
            self.refresh(now)
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        key = self._keys.get(kid)
        if key is None and now - self._attempted_at >= self._refresh_min_s:
            self.refresh(now)
            key = self._keys.get(kid)
        return key

    def due(self) -> bool:
        """Whether the cached set is older than ``cache_s``."""
        return time.monotonic() - self._fetched_at > self._cache_s

    def refresh(self, now: float | None = None) -> None:
        """Fetch the key set now; on failure keep the old one (raises only when there is none)."""
        with self._lock:
            now = time.monotonic() if now is None else now
            self._attempted_at = now
            self.fetches += 1
            try:
                r = httpx.get(self._url, timeout=self._timeout_s, verify=self._verify,
                              headers={"accept": "application/json"})
                r.raise_for_status()
                doc = r.json()
                usable = {k.key_id: k for k in jwt.PyJWKSet.from_dict(doc).keys
                          if k.key_id and k.key_type == "RSA" and k.public_key_use in (None, "sig")}
                raw = {str(j.get("kid")): json.dumps(j, sort_keys=True) for j in doc.get("keys", [])
                       if j.get("kid") in usable}
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as e:
                if not self._keys:
                    raise JwksUnavailable(f"the JWKS at {self._url} could not be read: {e}") from e
                log.warning("JWKS refresh from %s failed (%s); keeping the %d keys cached", self._url, e,
                            len(self._keys))
                return
            if any(raw.get(kid) != old for kid, old in self._raw.items()):
                self.generation += 1  # a key was withdrawn or replaced: tokens it verified are no longer valid
            if raw != self._raw:
                log.info("JWKS from %s: key ids %s", self._url, ", ".join(sorted(raw)) or "none")
            self._keys = {kid: k.key for kid, k in usable.items()}
            self._raw = raw
            self._fetched_at = now


def check_url(url: str) -> str:
    """``url`` when it looks like an http(s) URL; a :class:`ConfigurationError` otherwise."""
    if not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"EVENTRAY_JWKS_URL={url!r} must be an https:// URL of a JWKS endpoint")
    return url
