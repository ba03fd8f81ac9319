"""The platform's ``events`` subscription over the replica's :class:`~.live.EventHub`.

Who may follow which aggregates is the app's rule (``GraphQLExtension.events_rule``); without
one, every authenticated caller but a customer may (a customer's ownership is domain knowledge).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from ariadne import SubscriptionType
from graphql import GraphQLResolveInfo

from eventray.serving.api import policy

subscription = SubscriptionType()


async def _authorize(info: GraphQLResolveInfo, aggregate_type: str | None, aggregate_id: str | None) -> None:
    c = info.context
    rule = c.get("events_rule")
    if rule is not None:
        await rule(c["principal"], aggregate_type, aggregate_id, c)
    elif c["principal"].role == "customer":
        raise policy.denied("follow events (the app grants customers no events)")


@subscription.source("events")
async def events_source(_: Any, info: GraphQLResolveInfo, aggregateType: str | None = None,
                        aggregateId: str | None = None) -> AsyncGenerator[Any, None]:
    await _authorize(info, aggregateType, aggregateId)
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
