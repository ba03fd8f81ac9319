"""The bank's transfer fields (``requestTransfer``, ``transfer``, ``transfers``, ``stuckSagas``,
``transferStatus``): short delegations to the TransferMoney saga's client.

The client comes from the replica's services (``services.saga("TransferMoney")``), built once per
replica by :meth:`ApiServices.start <eventray.serving.api.services.ApiServices.start>`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from ariadne import MutationType, ObjectType, QueryType, SubscriptionType
from graphql import GraphQLResolveInfo

from eventray.platform.domain import new_id
from eventray.platform.errors import InvalidCommand, NotFound
from eventray.serving.api.policy import require_admin
from eventray.serving.bank import policy
from eventray.serving.bank.money import serialize_money

__all__ = ["BINDABLES", "transfer_view"]

saga_query = QueryType()
saga_mutation = MutationType()
saga_subscription = SubscriptionType()
transfer_type = ObjectType("Transfer")
BINDABLES = (saga_query, saga_mutation, saga_subscription, transfer_type)

_POLL_S = 0.1


SAGA = "TransferMoney"


def _client(services: Any) -> Any:
    return services.saga(SAGA)


def transfer_view(state: Any, now_ms: int | None = None) -> dict[str, Any]:
    """A transfer saga's state as the ``Transfer`` type."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return {
        "id": state.transfer_id, "fromAccountId": state.from_account, "toAccountId": state.to_account,
        "amount": serialize_money(state.amount), "currency": state.currency, "status": state.status.upper(),
        "step": state.step, "attempt": state.attempt, "score": state.score, "reason": state.reason,
        "requestedAt": state.requested_at_ms, "updatedAt": state.updated_at_ms, "deadline": state.deadline_ms,
        "ageSeconds": (now_ms - state.requested_at_ms) / 1000,
        "steps": [{"step": s.step, "result": s.result, "attempt": s.attempt, "at": s.at_ms, "detail": s.detail or None}
                  for s in state.steps],
    }


async def _visible(info: GraphQLResolveInfo, state: Any) -> bool:
    principal = info.context["principal"]
    if principal.role != "customer":
        return True
    owners = info.context["app"].owners
    for account in (state.from_account, state.to_account):
        try:
            await policy.require_account(principal, account, owners)
            return True
        except Exception:  # noqa: BLE001 - not this one: try the other side
            continue
    return False


@saga_mutation.field("requestTransfer")
async def resolve_request_transfer(_: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    from eventray.sagas.transfer_money import TransferRequest

    services, principal = info.context["services"], info.context["principal"]
    await policy.require_account(principal, input["fromAccountId"], info.context["app"].owners)
    amount = input["amount"]
    if type(amount) is not int or amount <= 0:
        raise InvalidCommand("amount must be a positive number of minor units", field="amount")
    request = TransferRequest(
        transfer_id=input.get("transferId") or new_id(), from_account=input["fromAccountId"],
        to_account=input["toAccountId"], amount=amount, currency=input["currency"], subject=principal.subject,
        correlation_id=info.context.get("request_id"))
    return transfer_view(await _client(services).request(request))


@saga_query.field("transfer")
async def resolve_transfer(_: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    state = await _client(info.context["services"]).get(id)
    if state is None or not await _visible(info, state):
        return None
    return transfer_view(state)


@saga_query.field("transfers")
async def resolve_transfers(_: Any, info: GraphQLResolveInfo, accountId: str, first: int = 20) -> list[dict[str, Any]]:
    services = info.context["services"]
    await policy.require_account(info.context["principal"], accountId, info.context["app"].owners)
    if not 1 <= first <= 500:
        raise InvalidCommand("first must be between 1 and 500", field="first")
    states = await _client(services).by_key(accountId)
    return [transfer_view(s) for s in states[:first]]


@saga_query.field("stuckSagas")
async def resolve_stuck_sagas(_: Any, info: GraphQLResolveInfo, olderThanSeconds: int = 60) -> list[dict[str, Any]]:
    require_admin(info.context["principal"], "list stuck sagas")
    states = await _client(info.context["services"]).stuck(max(0, olderThanSeconds) * 1000)
    return [transfer_view(s) for s in sorted(states, key=lambda s: s.requested_at_ms)]


@saga_subscription.source("transferStatus")
async def transfer_status_source(_: Any, info: GraphQLResolveInfo, id: str) -> AsyncGenerator[Any, None]:
    client = _client(info.context["services"])
    state = await client.get(id)
    if state is None or not await _visible(info, state):
        raise NotFound(f"transfer {id!r} does not exist")
    last = None
    while True:
        key = (state.status, state.attempt, len(state.steps))
        if key != last:
            last = key
            yield state
        if state.status in ("completed", "compensated", "failed_needs_attention"):
            return
        await asyncio.sleep(_POLL_S)
        state = await client.get(id) or state


@saga_subscription.field("transferStatus")
def resolve_transfer_status(state: Any, *_: Any, **__: Any) -> dict[str, Any]:
    return transfer_view(state)
