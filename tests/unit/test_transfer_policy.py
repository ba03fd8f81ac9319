"""TransferMoney's policy from EVENTRAY_SAGA_*: an unset fraud threshold is the scorer's own boundary."""

from __future__ import annotations

import pytest

from eventray.serving.bank.fraud import SCORER_BOUNDARY, AmountRuleScorer, transfer_policy


def test_unset_threshold_is_the_scorers_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTRAY_SAGA_FRAUD_THRESHOLD", raising=False)
    monkeypatch.delenv("EVENTRAY_SAGA_SCORER", raising=False)
    assert transfer_policy().scorer == "anomaly"
    assert transfer_policy().fraud_threshold == SCORER_BOUNDARY["anomaly"] == 0.0
    assert transfer_policy(scorer="rule").fraud_threshold == SCORER_BOUNDARY["rule"] == 1.0
    monkeypatch.setenv("EVENTRAY_SAGA_SCORER", "rule")
    assert transfer_policy().fraud_threshold == 1.0


async def test_rule_boundary_refuses_from_the_limit_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTRAY_SAGA_FRAUD_THRESHOLD", raising=False)
    policy = transfer_policy(scorer="rule", rule_limit=1_000)
    below, at, above = await AmountRuleScorer(limit=policy.rule_limit).score(
        [type("M", (), {"amount": a})() for a in (999, 1_000, 1_001)])
    assert below <= policy.fraud_threshold and at <= policy.fraud_threshold < above


def test_a_set_threshold_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTRAY_SAGA_FRAUD_THRESHOLD", "0.4")
    assert transfer_policy().fraud_threshold == 0.4
    assert transfer_policy(scorer="rule").fraud_threshold == 0.4
    assert transfer_policy(fraud_threshold=0.7).fraud_threshold == 0.7
