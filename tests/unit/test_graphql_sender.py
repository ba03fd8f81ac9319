"""The chaos monkey's GraphQL client resends what is not acknowledged, with the same ids, and
stops on an answer that no resend can change."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from eventray.platform.chaos.monkey import GraphQLSender, Ingress

INGRESS = Ingress(url="http://ingress.test/graphql", health_url="http://ingress.test/healthz", verify=True,
                  app_name="eventray")


def _success(cid: str, version: int) -> dict[str, Any]:
    return {"__typename": "CommandSuccess", "commandId": cid, "aggregateId": "acct-1", "version": version,
            "duplicate": False, "events": [{"type": "Deposited"}]}


def _retryable(cid: str) -> dict[str, Any]:
    return {"__typename": "RetryableError", "code": "UNAVAILABLE", "message": "shard down", "commandId": cid}


def _run(answers: list[Any], commands: list[tuple[str, str, dict[str, Any]]], *, deadline_s: float = 5.0):
    """Send ``commands`` against a fake ingress answering ``answers`` in turn; (results, sender, requests)."""
    seen: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append({"body": json.loads(request.content), "auth": request.headers["authorization"]})
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return httpx.Response(status, json=body)

    async def go():
        sender = GraphQLSender(INGRESS, ["t1", "t2"], retry_s=0.0, transport=httpx.MockTransport(handle))
        try:
            return await sender.send(commands, time.monotonic() + deadline_s), sender
        finally:
            await sender.close()

    results, sender = asyncio.run(go())
    return results, sender, seen


def _deposit(cid: str) -> tuple[str, str, dict[str, Any]]:
    return cid, "deposit", {"accountId": "acct-1", "amount": 5, "commandId": cid}


def test_only_what_is_not_acknowledged_is_sent_again_with_its_own_id() -> None:
    answers = [
        httpx.ConnectError("refused"),  # the replica is down
        (503, {"errors": [{"message": "no replica"}]}),
        (200, {"data": {"submitCommands": [_success("c1", 1), _retryable("c2")]}}),
        (200, {"data": None, "errors": [{"message": "shard down", "extensions": {"code": "RETRYABLE"}}]}),
        (200, {"data": {"submitCommands": [_success("c2", 2)]}}),
    ]
    results, sender, seen = _run(answers, [_deposit("c1"), _deposit("c2")])
    assert results == [True, True]
    assert sender.acked["c1"].version == 1 and sender.acked["c2"].version == 2
    assert sender.acked["c2"].events == 1
    assert sender.retries == 4
    sent = [[c["deposit"]["commandId"] for c in s["body"]["variables"]["c"]] for s in seen]
    assert sent == [["c1", "c2"], ["c1", "c2"], ["c1", "c2"], ["c2"], ["c2"]]
    assert {s["auth"] for s in seen} == {"Bearer t1", "Bearer t2"}  # subjects taken in turn


def test_a_refusal_no_resend_can_change_raises() -> None:
    refused = {"__typename": "ValidationError", "code": "VALIDATION", "message": "amount must be positive",
               "commandId": "c1"}
    with pytest.raises(RuntimeError, match="ValidationError"):
        _run([(200, {"data": {"submitCommands": [refused]}})], [_deposit("c1")])
    with pytest.raises(RuntimeError, match="GRAPHQL_VALIDATION_FAILED"):
        _run([(200, {"data": None, "errors": [{"message": "bad", "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]})],
             [_deposit("c1")])


def test_past_the_deadline_what_is_left_is_not_acknowledged() -> None:
    results, sender, _ = _run([(200, {"data": {"submitCommands": [_retryable("c1")]}})], [_deposit("c1")],
                              deadline_s=-1.0)
    assert results == [False]
    assert sender.acked == {}


def test_a_duplicate_without_events_reports_an_unknown_count() -> None:
    dup = {**_success("c1", 3), "duplicate": True, "events": []}
    results, sender, _ = _run([(200, {"data": {"submitCommands": [dup]}})], [_deposit("c1")])
    assert results == [True] and sender.acked["c1"].events is None
