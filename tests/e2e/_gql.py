"""Queries and helpers shared by the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
