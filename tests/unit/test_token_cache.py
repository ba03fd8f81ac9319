"""The bearer-token verifier keeps what it verified, until the token expires, and only that."""

from __future__ import annotations

import jwt
import pytest

from eventray.serving.api import principal as principal_module
from eventray.serving.api.principal import InvalidToken, TokenVerifier, mint_token
from eventray.serving.settings import DEV_JWT_SECRET, ServingSettings


@pytest.fixture()
def verifier() -> TokenVerifier:
    return TokenVerifier(ServingSettings(profile="dev", jwt_leeway_s=0))


def test_a_verified_token_is_not_checked_again_until_it_expires(verifier, monkeypatch) -> None:
    token = mint_token("alice", "teller", secret=DEV_JWT_SECRET, ttl_s=60)
    first = verifier.verify(token)
    assert (first.subject, first.role) == ("alice", "teller")

    def refuse(*_a, **_k):
        raise jwt.InvalidSignatureError("the cache was not used")

    monkeypatch.setattr(principal_module.jwt, "decode", refuse)
    assert verifier.verify(token) == first  # from the cache: no signature check
    real_time = principal_module.time.time
    monkeypatch.setattr(principal_module.time, "time", lambda: real_time() + 120)  # past its exp
    with pytest.raises(InvalidToken):
        verifier.verify(token)  # the entry expired with the token: checked again, and refused
    assert token not in verifier._verified


def test_a_refused_token_is_never_kept(verifier) -> None:
    expired = mint_token("bob", "teller", secret=DEV_JWT_SECRET, ttl_s=-60)
    forged = mint_token("mallory", "admin", secret="not-the-secret-" * 4, ttl_s=60)
    for token in (expired, forged, expired):
        with pytest.raises(InvalidToken):
            verifier.verify(token)
    assert not verifier._verified


def test_the_cache_is_bounded(verifier, monkeypatch) -> None:
    monkeypatch.setattr(TokenVerifier, "CACHE_MAX", 3)
    tokens = [mint_token(f"user-{i}", "customer", secret=DEV_JWT_SECRET, ttl_s=60) for i in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert list(verifier._verified) == tokens[-3:]
