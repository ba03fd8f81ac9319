"""Who is calling: the authenticated principal, verified from a JWT bearer token."""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from eventray.serving.api.jwks import JwksKeys, JwksUnavailable, check_url
from eventray.serving.settings import ServingSettings

log = logging.getLogger("eventray.serving.auth")

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
    """Verifies HS256 (dev secret) and RS256 (public key, JWKS file or JWKS URL) tokens.

    Expiry (``exp`` required), audience and, when configured, issuer are checked, with a
    bounded clock skew. The algorithm is taken from the key the token is checked against,
    never from the token alone, so an HS256 token signed with an RS256 public key is refused.
    The role is the ``role`` claim, else the strongest one the token's OAuth2 scopes grant
    (``jwt_scope_roles``).
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
        self._scope_roles = dict(settings.jwt_scope_roles)
        self._jwks: JwksKeys | None = None
        self._jwks_generation = 0
        if settings.jwks_url is not None:
            self._jwks = JwksKeys(check_url(settings.jwks_url), cache_s=settings.jwks_cache_s,
                                  refresh_min_s=settings.jwks_refresh_min_s, timeout_s=settings.jwks_timeout_s,
                                  verify=ssl.create_default_context(cafile=str(settings.jwks_ca_file))
                                  if settings.jwks_ca_file else True)
        if self._secret is None and not self._rsa_keys and self._jwks is None:
            from eventray.platform.errors import ConfigurationError

            raise ConfigurationError("no token keys: set EVENTRAY_JWT_SECRET (dev), EVENTRAY_JWKS_URL or an "
                                     "RS256 key file")

    #: verified tokens kept (their principal and expiry), so a client's next request skips the
    #: signature check. A verified token stays valid until it expires, or until a JWKS refresh
    #: withdraws or replaces a key (then all are checked again). The oldest entry goes first when full.
    CACHE_MAX = 10_000

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; raises :class:`InvalidToken` otherwise."""
        cache = self._verified
        jwks = self._jwks
        if jwks is not None:
            if jwks.due():
                self._refresh_jwks(jwks)
            if jwks.generation != self._jwks_generation:  # a key was withdrawn: verify every token again
                cache.clear()
                self._jwks_generation = jwks.generation
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
            elif alg == "RS256" and (self._rsa_keys or self._jwks is not None):
                kid = header.get("kid")
                key = self._rsa_keys.get(kid) or (self._rsa_keys.get(None) if kid is None or len(self._rsa_keys) == 1 else None)
                if key is None and self._jwks is not None:
                    key = self._jwks_key(kid)
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
        if role is None:
            role = self._role_from_scopes(claims)
        if role not in ROLES:
            raise InvalidToken(f"role must be one of {', '.join(ROLES)} (a `role` claim, or a scope among "
                               f"{', '.join(sorted(self._scope_roles))})")
        return Principal(subject=str(claims["sub"]), role=role), float(claims["exp"])

    def _role_from_scopes(self, claims: dict[str, Any]) -> str | None:
        raw = claims.get("scope", claims.get("scp"))
        scopes = raw.split() if isinstance(raw, str) else [str(s) for s in raw] if isinstance(raw, list) else []
        granted = {self._scope_roles[s] for s in scopes if s in self._scope_roles}
        return next((r for r in ROLES if r in granted), None)  # ROLES is strongest first

    def _jwks_key(self, kid: str | None) -> Any:
        assert self._jwks is not None
        try:
            return self._jwks.key(kid)
        except JwksUnavailable as e:
            raise InvalidToken(f"no signing keys could be fetched: {e}") from e

    def _refresh_jwks(self, jwks: JwksKeys) -> None:
        try:
            jwks.refresh()
        except JwksUnavailable as e:
            log.warning("%s", e)


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
