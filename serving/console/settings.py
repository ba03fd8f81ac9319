"""Settings of the console, read from ``EVENTRAY_CONSOLE_*`` environment variables.

The session cookie is signed with ``EVENTRAY_CONSOLE_SECRET``. In the dev profile an unset
secret falls back to a key derived from the HS256 token secret (every replica derives the
same one); the production profile refuses to start the console without it, since a key
derived from a token secret it does not even use would be a guessable one.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventray.platform.errors import ConfigurationError
from eventray.serving.settings import DEV_JWT_SECRET, ServingSettings

#: the shortest secret accepted for signing session cookies (HMAC-SHA256 wants >= 32 bytes of entropy)
MIN_SECRET_LENGTH = 32


class ConsoleSettings(BaseSettings):
    """Configuration of the web console at ``/console``.

    Attributes:
        enabled: mount the console on the ingress.
        secret: the HMAC key of the session cookie, shared by every replica (required in production).
        session_ttl_s: how long a login lasts; never longer than the bearer token it was minted from.
        query_timeout_s: the longest a screen's data query may take before it is cancelled.
        live_interval_s: seconds between two samples of the live feed.
    """

    model_config = SettingsConfigDict(env_prefix="EVENTRAY_CONSOLE_", extra="ignore", frozen=True)

    enabled: bool = True
    secret: str | None = Field(default=None, repr=False)
    session_ttl_s: int = Field(default=900, ge=60, le=3600)
    query_timeout_s: float = Field(default=10.0, gt=0, le=60)
    live_interval_s: float = Field(default=1.0, ge=0.2, le=10)


def session_key(console: ConsoleSettings, serving: ServingSettings) -> bytes:
    """The HMAC key of the session cookie; raises :class:`ConfigurationError` where none may be derived."""
    if console.secret:
        if serving.profile == "production" and len(console.secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                f"EVENTRAY_CONSOLE_SECRET must be at least {MIN_SECRET_LENGTH} characters in production; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return console.secret.encode()
    if serving.profile == "production":
        raise ConfigurationError(
            "the console needs EVENTRAY_CONSOLE_SECRET with EVENTRAY_PROFILE=production (the same random value "
            "on every replica: python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
            "or EVENTRAY_CONSOLE_ENABLED=false to serve no console")
    base = serving.hs256_secret or DEV_JWT_SECRET
    return hmac.new(base.encode(), b"eventray console session v1", hashlib.sha256).digest()
