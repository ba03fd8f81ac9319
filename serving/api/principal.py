"""Who is calling: the authenticated principal, verified from a JWT bearer token."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from eventray.serving.settings import ServingSettings

ROLES = ("admin", "teller", "customer")
ANONYMOUS_ROLE = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request.

    Attributes:
        subject: the token's ``sub``; for a customer, their user id. ``None`` when anonymous.
        role: ``admin``, ``teller``, ``customer`` or ``anonymous``.
    """

    subject: str | None
    role: str

    @property
    def is_staff(self) -> bool:
        return self.role in ("admin", "teller")

    @property
    def rate_key(self) -> str:
        return f"sub:{self.subject}" if self.subject else "anonymous"


ANONYMOUS = Principal(subject=None, role=ANONYMOUS_ROLE)


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired, for another audience or badly signed."""


class TokenVerifier:
    """Verifies HS256 (dev secret) and RS256 (public key or JWKS file) tokens.

    Expiry (``exp`` required), audience and, when configured, issuer are checked. The
    algorithm is taken from the key the token is checked against, never from the token alone,
    so an HS256 token signed with an RS256 public key is refused.
    """

    def __init__(self, settings: ServingSettings) -> None:
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway_s
        self._secret = settings.hs256_secret
        self._rsa_keys: dict[str | None, Any] = {}
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        if settings.jwt_public_key_file is not None:
            self._rsa_keys[None] = _load_pem_public(settings.jwt_public_key_file.read_bytes())
        if settings.jwks_file is not None:
            for jwk in json.loads(settings.jwks_file.read_text())["keys"]:
                self._rsa_keys[jwk.get("kid")] = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
        if self._secret is None and not self._rsa_keys:
            from eventray.platform.errors import ConfigurationError

            raise ConfigurationError("no token keys: set EVENTRAY_JWT_SECRET (dev) or an RS256 key file")

    #: verified tokens kept (their principal and expiry), so a client's next request skips the
    #: signature check; the keys are fixed for the verifier's life, so a verified token stays valid
    #: until it expires. The oldest entry goes first when it is full.
    CACHE_MAX = 10_000

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; raises :class:`InvalidToken` otherwise."""
        cache = self._verified
        hit = cache.get(token)
        if hit is not None:
            principal, expires = hit
            if time.time() <= expires + self._leeway:
                cache.move_to_end(token)
                return principal
            del cache[token]
        principal, expires = self._verify(token)
        cache[token] = (principal, expires)
        if len(cache) > self.CACHE_MAX:
            cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg == "HS256" and self._secret is not None:
                key: Any = self._secret
            elif alg == "RS256" and self._rsa_keys:
                kid = header.get("kid")
                key = self._rsa_keys.get(kid) or (self._rsa_keys.get(None) if kid is None or len(self._rsa_keys) == 1 else None)
                if key is None:
                    raise InvalidToken(f"unknown key id {kid!r}")
            else:
                raise InvalidToken(f"algorithm {alg!r} is not accepted")
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self._audience, issuer=self._issuer,
                leeway=self._leeway, options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from e
        role = claims.get("role")
        if role not in ROLES:
            raise InvalidToken(f"role must be one of {', '.join(ROLES)}")
        return Principal(subject=str(claims["sub"]), role=role), float(claims["exp"])


def _load_pem_public(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem)


def mint_token(
    subject: str, role: str, *, secret: str, audience: str = "eventray", ttl_s: int = 3600,
    algorithm: str = "HS256", kid: str | None = None, issuer: str | None = None,
) -> str:
    """A signed token for ``subject`` (development, tests and the demo)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "role": role, "aud": audience, "iat": now, "exp": now + ttl_s}
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=algorithm, headers={"kid": kid} if kid else None)
