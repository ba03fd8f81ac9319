"""The demo's own checks can fail: the exactly-once count and the report's verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from eventray.serving.demo import DemoReport, Ledger, Part, Reporter, _exactly_once


class _Shards:
    """Answers ``account(consistent: true)`` with fixed balances and versions."""

    def __init__(self, accounts: dict[str, tuple[int, int]]) -> None:
        self.accounts = accounts

    async def query(self, _query: str, variables: dict[str, Any]) -> dict[str, Any]:
        got = self.accounts.get(variables["id"])
        return {"account": None if got is None else {"balance": got[0], "version": got[1]}}


def _ledger() -> Ledger:
    ledger = Ledger()
    ok = {"__typename": "CommandSuccess", "events": [{"type": "MoneyDeposited"}]}
    assert ledger.record("a", 100, ok) and ledger.record("a", -30, ok)
    assert ledger.record("a", -999, {"__typename": "RuleViolationError"})  # acknowledged, applied 0 times
    assert not ledger.record("b", 5, None)  # never answered
    return ledger


async def _verdict(accounts: dict[str, tuple[int, int]], ledger: Ledger) -> tuple[bool, str]:
    report = DemoReport()
    await _exactly_once(_Shards(accounts), ["a"], ledger, Reporter(Console(quiet=True), report))
    (part,) = report.parts
    return part.ok, part.summary


async def test_every_acknowledged_command_applied_once_holds() -> None:
    ledger = _ledger()
    ledger.unanswered = 0
    assert (ledger.applied, ledger.refused, ledger.balance, ledger.events) == (2, 1, {"a": 70}, {"a": 2})
    ok, summary = await _verdict({"a": (70, 3)}, ledger)
    assert ok and summary == "2 acknowledged, 2 exactly once, 0 lost, 0 twice"


async def test_a_lost_or_doubled_command_fails_the_count() -> None:
    ledger = _ledger()
    ledger.unanswered = 0
    assert await _verdict({"a": (100, 2)}, ledger) == (False, "2 acknowledged, 0 exactly once, 1 lost, 0 twice")
    assert await _verdict({"a": (140, 4)}, ledger) == (False, "2 acknowledged, 0 exactly once, 0 lost, 1 twice")
    ok, _ = await _verdict({"a": (71, 3)}, ledger)  # right version, wrong balance
    assert not ok


async def test_an_unanswered_command_fails_the_count() -> None:
    ok, _ = await _verdict({"a": (70, 3)}, _ledger())
    assert not ok


def test_the_report_fails_on_any_failed_part_or_request() -> None:
    report = DemoReport(parts=[Part("a", True, ""), Part("b", True, "")])
    assert report.ok
    report.failures = 1
    assert not report.ok
    assert not DemoReport(parts=[Part("a", True, ""), Part("b", False, "")]).ok
    assert not DemoReport(replay_errors=1).ok
