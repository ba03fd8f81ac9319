"""The saga fields of the bank's schema (serving/bank/schema.graphql) bind to their resolvers,
and they answer through the saga client (a recording fake: no cluster here)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from graphql import graphql, parse, subscribe

from eventray.serving.api.principal import Principal
from eventray.platform.composition import Runtime
from eventray.serving.api.schema import executable_schema
from eventray.sagas.transfer_money import TransferMoney, TransferPolicy, TransferRequest


def _schema():
    return executable_schema(Runtime.load())


class FakeSagas:
    def __init__(self) -> None:
        self.saga = TransferMoney(TransferPolicy())
        self.states = {}
        self.polls = 0

    async def request(self, req: TransferRequest):
        self.states[req.transfer_id] = self.saga.start(req, 1_000).state
        return self.states[req.transfer_id]

    async def get(self, tid):
        self.polls += 1
        state = self.states.get(tid)
        if state is not None and self.polls > 2 and state.status == "debiting":
            from eventray.platform.sagas import CommandFailed

            state = self.states[tid] = self.saga.react(state, CommandFailed(
                step="debit", attempt=1, error_code="INSUFFICIENT_FUNDS", error_type="InsufficientFunds",
                message="no", retryable=False), 2_000).state
        return state

    async def by_key(self, account):
        return [s for s in self.states.values() if account in (s.from_account, s.to_account)]

    async def stuck(self, older_than_ms):
        return [s for s in self.states.values() if s.status not in ("completed", "compensated")]


class Services:
    def __init__(self) -> None:
        self.saga_client = FakeSagas()

    def saga(self, name):
        assert name == "TransferMoney"
        return self.saga_client


def ctx(role: str = "admin"):
    return {"services": Services(), "app": SimpleNamespace(owners=None), "principal": Principal(subject="u1", role=role), "request_id": "r1"}


async def test_request_then_read_a_transfer_and_list_stuck_ones() -> None:
    schema, c = _schema(), ctx()
    m = await graphql(schema, 'mutation { requestTransfer(input: {transferId: "t9", fromAccountId: "a", '
                              'toAccountId: "b", amount: 250, currency: "EUR"}) { id status step amount } }',
                      context_value=c)
    assert m.errors is None, m.errors
    assert m.data["requestTransfer"] == {"id": "t9", "status": "DEBITING", "step": "debit", "amount": 250}
    q = await graphql(schema, '{ transfer(id: "t9") { id fromAccountId steps { step result } } '
                              'transfers(accountId: "b") { id } stuckSagas(olderThanSeconds: 0) { id status } }',
                      context_value=c)
    assert q.errors is None, q.errors
    assert q.data["transfer"]["steps"] == [{"step": "debit", "result": "started"}]
    assert q.data["transfers"] == [{"id": "t9"}] and q.data["stuckSagas"][0]["id"] == "t9"


async def test_stuck_sagas_is_for_admins_only() -> None:
    r = await graphql(_schema(), "{ stuckSagas { id } }", context_value=ctx("teller"))
    assert r.errors and "admins only" in r.errors[0].message


async def test_transfer_status_streams_until_terminal() -> None:
    schema, c = _schema(), ctx()
    await c["services"].saga_client.request(
        TransferRequest(transfer_id="t1", from_account="a", to_account="b", amount=5, currency="EUR"))
    stream = subscribe(schema, parse('subscription { transferStatus(id: "t1") { status reason } }'),
                       context_value=c)
    if hasattr(stream, "__await__"):
        stream = await stream
    seen = [r.data["transferStatus"] async for r in stream]
    assert [s["status"] for s in seen] == ["DEBITING", "COMPENSATED"]
    assert seen[-1]["reason"].startswith("debit refused")


@pytest.mark.parametrize("amount", [0, -5])
async def test_a_bad_amount_is_a_typed_error(amount) -> None:
    r = await graphql(_schema(), 'mutation { requestTransfer(input: {fromAccountId: "a", toAccountId: "b", '
                                 f'amount: {amount}, currency: "EUR"}}) {{ id }} }}', context_value=ctx())
    assert r.errors
