"""Queries and helpers shared by the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from eventray.serving.api.principal import mint_token
from eventray.serving.settings import DEV_JWT_SECRET

#: the e2e app's rate-limit burst (tests/e2e/conftest.py configures the app with it)
RATE_BURST = 60

RESULT = """
  __typename
  ... on CommandSuccess { commandId aggregateId version duplicate events { type version data } }
  ... on CommandError { code message commandId aggregateId }
  ... on ValidationError { field }
  ... on RuleViolationError { rule }
"""


def mutation(name: str) -> str:
    return f"mutation($input: {name[0].upper()}{name[1:]}Input!) {{ {name}(input: $input) {{ {RESULT} }} }}"


def send(client: Any, name: str, /, **input: Any) -> dict[str, Any]:
    return client.data(mutation(name), {"input": input})[name]


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["__typename"] == "CommandSuccess", result
    return result


def eventually(probe: Callable[[], Any], *, timeout_s: float = 20.0, interval_s: float = 0.2) -> Any:
    """Poll ``probe`` until it returns a truthy value (the read models are eventually consistent)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout_s}s; last value {value!r}")
        time.sleep(interval_s)


def token(subject: str, role: str, **kw: Any) -> str:
    return mint_token(subject, role, secret=DEV_JWT_SECRET, **kw)


class Client:
    """A GraphQL-over-HTTP client with one bearer token."""

    def __init__(self, url: str, bearer: str | None) -> None:
        self.url = url
        self.headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        self.http = httpx.Client(timeout=30)

    def post(self, query: str, variables: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
        return self.http.post(self.url, json={"query": query, "variables": variables or {}},
                              headers={**self.headers, **headers})

    def run(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.post(query, variables)
        # Ariadne answers 400 when there is no data at all (a refused or failed operation)
        assert r.status_code in (200, 400), r.text
        return r.json()

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.run(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]
