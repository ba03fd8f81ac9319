"""The demo's transfers: one completed, one compensated at a frozen target, one refused by the
fraud model with the alert the alerts projection raised on it.

Every account is the run's own (``demo-<run>-t...``), so the fraud step's scorer sees each
source account's first movement: ordinary amounts score below the model's outlier boundary at
every hour of the day, and a transfer a hundred thousand times the account's usual deposits
scores above it (the anomaly model's features: the amount, the hour, the gap since the last
movement, the movements in the past day).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from eventray.serving.demo_client import GraphQLClient

__all__ = ["TransferAccounts", "money", "run_transfers"]

_TERMINAL = ("COMPLETED", "COMPENSATED", "FAILED_NEEDS_ATTENTION")
_TRANSFER = "id status step score reason steps { step result }"
_SOURCE = 500_00  # what each ordinary source account holds
_USUAL = 40_00  # the fraud source's usual deposit
_FRAUD = 5_000_000_00  # the refused transfer: far above the usual
_FLOAT = _FRAUD + 1_000_00  # the deposit that funds it (another amount: its own alert tells apart)


def money(minor: int) -> str:
    """Minor units as major with cents: ``12500`` -> ``125.00``."""
    return f"{minor / 100:,.2f}"


@dataclass(frozen=True)
class TransferAccounts:
    """The run's transfer accounts and the commands that set them up."""

    run: str

    def id(self, name: str) -> str:
        return f"demo-{self.run}-t{name}"

    @property
    def owner(self) -> str:
        return f"demo-{self.run}-payer"

    def opening(self) -> list[dict[str, Any]]:
        """``submitCommands`` entries: the owner and the six accounts."""
        out: list[dict[str, Any]] = [{"registerUser": {"userId": self.owner, "name": f"Demo Payer {self.run}",
                                                       "email": f"payer.{self.run}@demo.example"}}]
        for name in ("ok-src", "ok-dst", "frozen-src", "frozen-dst", "fraud-src", "fraud-dst"):
            out.append({"openAccount": {"accountId": self.id(name), "ownerId": self.owner, "currency": "EUR"}})
        return out

    def funding(self) -> list[dict[str, Any]]:
        """``submitCommands`` entries after the opening: balances, and the fraud source's usual
        deposits followed by the float it is about to move."""
        out = [{"deposit": {"accountId": self.id(n), "amount": _SOURCE}} for n in ("ok-src", "frozen-src")]
        out += [{"deposit": {"accountId": self.id("fraud-src"), "amount": _USUAL}} for _ in range(5)]
        out.append({"deposit": {"accountId": self.id("fraud-src"), "amount": _FLOAT}})
        return out


async def _transfer(teller: GraphQLClient, transfer_id: str, src: str, dst: str, amount: int,
                    timeout_s: float) -> tuple[dict[str, Any], float]:
    """Request the transfer (retried by its id) and poll ``transfer(id)`` until it is terminal."""
    t0 = time.perf_counter()
    await teller.query("mutation($i: RequestTransferInput!) { requestTransfer(input: $i) { id status } }",
                       {"i": {"transferId": transfer_id, "fromAccountId": src, "toAccountId": dst,
                              "amount": amount, "currency": "EUR"}})
    deadline = time.monotonic() + timeout_s
    while True:
        state = (await teller.query(f"query($id: ID!) {{ transfer(id: $id) {{ {_TRANSFER} }} }}",
                                    {"id": transfer_id}))["transfer"]
        if state is not None and state["status"] in _TERMINAL:
            return state, time.perf_counter() - t0
        if time.monotonic() > deadline:
            return state or {"id": transfer_id, "status": "UNKNOWN", "reason": "never visible"}, time.perf_counter() - t0
        await asyncio.sleep(0.25)


async def _balance(teller: GraphQLClient, account: str) -> int:
    got = (await teller.query("query($id: ID!) { account(id: $id, consistent: true) { balance } }",
                              {"id": account}))["account"]
    return int(got["balance"]) if got else -1


async def _alert(teller: GraphQLClient, account: str, amount: int, timeout_s: float) -> dict[str, Any] | None:
    """The alert on ``account`` for a movement of ``amount``, once the alerts projection has it."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = (await teller.query("query($a: ID!) { alerts(accountId: $a, first: 20) { amount score zscore reason "
                                   "modelVersion } }", {"a": account}))["alerts"]
        hit = next((a for a in rows if int(a["amount"]) == amount), None)
        if hit is not None or time.monotonic() > deadline:
            return hit
        await asyncio.sleep(0.5)


def _steps(state: dict[str, Any]) -> str:
    return ", ".join(f"{s['step']} {s['result']}" for s in state.get("steps") or [])


async def run_transfers(teller: GraphQLClient, accounts: TransferAccounts, say: Any, *,
                        timeout_s: float = 120.0) -> None:
    """Freeze the frozen target, run the three transfers at once, check each; ``say(part, ok, line)``
    reports one line per part (the fraud part's alert included)."""
    acct = accounts.id
    frozen = (await teller.command("freezeAccount", {"accountId": acct("frozen-dst"), "reason": "demo: held by a teller"}))
    if frozen["__typename"] != "CommandSuccess":
        say("transfer compensated", False, f"freezeAccount {acct('frozen-dst')} answered {frozen}")
    ok_amount, frozen_amount = 125_00, 80_00
    (ok, ok_s), (held, held_s), (fraud, fraud_s) = await asyncio.gather(
        _transfer(teller, acct("ok"), acct("ok-src"), acct("ok-dst"), ok_amount, timeout_s),
        _transfer(teller, acct("frozen"), acct("frozen-src"), acct("frozen-dst"), frozen_amount, timeout_s),
        _transfer(teller, acct("fraud"), acct("fraud-src"), acct("fraud-dst"), _FRAUD, timeout_s))
    names = ("ok-src", "ok-dst", "frozen-src", "frozen-dst", "fraud-src", "fraud-dst")
    b = dict(zip(names, await asyncio.gather(*(_balance(teller, acct(n)) for n in names))))

    good = ok["status"] == "COMPLETED" and b["ok-src"] == _SOURCE - ok_amount and b["ok-dst"] == ok_amount
    say("transfer completed", good,
        f"{acct('ok')}: {money(ok_amount)} EUR -> {ok['status']} in {ok_s:.1f}s ({_steps(ok)}; score "
        f"{_score(ok)}); balances {money(b['ok-src'])} / {money(b['ok-dst'])}")

    good = (held["status"] == "COMPENSATED" and str(held.get("reason") or "").startswith("credit refused")
            and b["frozen-src"] == _SOURCE and b["frozen-dst"] == 0)
    say("transfer compensated", good,
        f"{acct('frozen')}: {money(frozen_amount)} EUR to a frozen account -> {held['status']} in {held_s:.1f}s: "
        f"{held.get('reason')}; source back at {money(b['frozen-src'])}")

    refunded = 5 * _USUAL + _FLOAT
    good = (fraud["status"] == "COMPENSATED" and str(fraud.get("reason") or "").startswith("fraud check")
            and b["fraud-src"] == refunded and b["fraud-dst"] == 0)
    say("transfer flagged by the fraud model", good,
        f"{acct('fraud')}: {money(_FRAUD)} EUR after deposits of {money(_USUAL)} -> {fraud['status']} in "
        f"{fraud_s:.1f}s: {fraud.get('reason')}; source back at {money(b['fraud-src'])}")

    t0 = time.perf_counter()
    alert = await _alert(teller, acct("fraud-src"), _FRAUD, timeout_s=60.0)
    if alert is None:
        say("alert on the flagged transfer", False, f"no alert on {acct('fraud-src')} for {money(_FRAUD)} within 60s "
            "(is the alerts projection running? eventray projections)")
    else:
        say("alert on the flagged transfer", True,
            f"alerts({acct('fraud-src')}): {money(int(alert['amount']))} scored {alert['score']:.3f} by anomaly "
            f"v{alert['modelVersion']}, z-score {alert['zscore']:.1f}, reason {alert['reason']} "
            f"(visible after {time.perf_counter() - t0:.1f}s)")


def _score(state: dict[str, Any]) -> str:
    score = state.get("score")
    return "none" if score is None else f"{score:.3f}"

