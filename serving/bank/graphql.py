"""The bank's GraphQL extension: its SDL, resolvers, command rules and per-replica state.

``bank.graphql`` extends the platform's root types with the read models (users, accounts,
activity, alerts), the transfer saga's fields and the ``accountBalance`` subscription; the
platform adds one mutation per command in :data:`~eventray.serving.bank.policy.RULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ariadne import SubscriptionType
from graphql import GraphQLResolveInfo

from eventray.platform.app import GraphQLExtension
from eventray.platform.errors import NotFound
from eventray.serving.bank import policy
from eventray.serving.bank.money import money_scalar, serialize_money
from eventray.serving.bank.resolvers import BINDABLES as QUERIES
from eventray.serving.bank.resolvers import make_loaders
from eventray.serving.bank.transfers import BINDABLES as TRANSFERS

__all__ = ["BankState", "extension"]


@dataclass
class BankState:
    """Per replica: the owner cache and the read API (``context["app"]``)."""

    owners: policy.Owners
    queries: ModuleType


def setup(services: Any) -> BankState:
    async def owner_lookup(account_id: str) -> str | None:
        found = await services.reads.read(account_id)
        return getattr(found[0], "owner_id", None) if found else None

    return BankState(owners=policy.Owners(owner_lookup), queries=importlib.import_module("eventray.projections.queries"))


async def events_rule(principal: Any, aggregate_type: str | None, aggregate_id: str | None, context: Any) -> None:
    """Staff follow anything; a customer names their own user or one of their accounts."""
    if principal.role != "customer":
        return
    if aggregate_id is None:
        raise policy.denied("subscribe to every aggregate's events")
    if aggregate_id != principal.subject:
        await policy.require_account(principal, aggregate_id, context["app"].owners)


subscription = SubscriptionType()


@subscription.source("accountBalance")
async def account_balance_source(_: Any, info: GraphQLResolveInfo, accountId: str) -> AsyncGenerator[Any, None]:
    services = info.context["services"]
    await policy.require_account(info.context["principal"], accountId, info.context["app"].owners)
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


extension = GraphQLExtension(
    sdl=Path(__file__).with_name("bank.graphql"),
    resolvers=[*QUERIES, *TRANSFERS, subscription, money_scalar],
    commands=policy.RULES,
    setup=setup,
    loaders=make_loaders,
    events_rule=events_rule,
)
