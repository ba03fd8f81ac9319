"""Subscription sources and resolvers over the replica's :class:`~.live.EventHub`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from ariadne import SubscriptionType
from graphql import GraphQLResolveInfo

from eventray.platform.errors import NotFound
from eventray.serving.api import policy
from eventray.serving.api.commands import serialize_money

subscription = SubscriptionType()


async def _authorize_aggregate(info: GraphQLResolveInfo, aggregate_id: str | None) -> None:
    c = info.context
    principal = c["principal"]
    if principal.role != "customer":
        return
    if aggregate_id is None:
        raise policy.denied("subscribe to every aggregate's events")
    if aggregate_id != principal.subject:
        await policy.require_account(principal, aggregate_id, c["services"].owners)


@subscription.source("events")
async def events_source(_: Any, info: GraphQLResolveInfo, aggregateType: str | None = None,
                        aggregateId: str | None = None) -> AsyncGenerator[Any, None]:
    await _authorize_aggregate(info, aggregateId)
    services = info.context["services"]
    sub = await services.hub.subscribe(aggregate_type=aggregateType, aggregate_id=aggregateId)
    services.metrics.subscriptions_active += 1
    try:
        async for rec in sub:
            if aggregateType is None or rec.envelope.aggregate_type == aggregateType:
                yield rec
    finally:
        services.metrics.subscriptions_active -= 1


@subscription.field("events")
def resolve_event(rec: Any, *_: Any, **__: Any) -> dict[str, Any]:
    env = rec.envelope
    return {
        "id": env.event_id, "type": env.event_type, "aggregateType": env.aggregate_type,
        "aggregateId": env.aggregate_id, "version": env.version, "timestamp": env.timestamp,
        "partition": rec.partition, "offset": rec.offset, "commandId": env.command_id,
        "correlationId": env.correlation_id, "subject": env.subject, "data": msgspec.to_builtins(rec.event),
    }


@subscription.source("accountBalance")
async def account_balance_source(_: Any, info: GraphQLResolveInfo, accountId: str) -> AsyncGenerator[Any, None]:
    services = info.context["services"]
    await policy.require_account(info.context["principal"], accountId, services.owners)
    # subscribe before reading, so nothing committed between the read and the tail is lost
    sub = await services.hub.subscribe(aggregate_type=None, aggregate_id=accountId)
    found = await services.reads.read(accountId)
    if found is None or not hasattr(found[0], "balance"):
        services.hub.remove(sub)
        raise NotFound(f"account {accountId!r} does not exist")
    state, version = found
    services.metrics.subscriptions_active += 1
    try:
        yield {"accountId": accountId, "balance": state.balance, "version": version}
        async for rec in sub:
            balance = getattr(rec.event, "balance_after", None)
            if rec.envelope.version > version and balance is not None:
                version = rec.envelope.version
                yield {"accountId": accountId, "balance": balance, "version": version}
    finally:
        services.metrics.subscriptions_active -= 1


@subscription.field("accountBalance")
def resolve_account_balance(update: dict[str, Any], *_: Any, **__: Any) -> dict[str, Any]:
    return {**update, "balance": serialize_money(update["balance"])}
