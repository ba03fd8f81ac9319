"""The bank's query resolvers: short delegations to its read API and its policy.

The read side is ``eventray.projections.queries`` over the replica's read pool; consistent
reads go to the shards. Rows come back as msgspec Structs; the views below only rename fields
for the schema. (Its commands' mutations are the platform's, generated from the commands.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ariadne import ObjectType, QueryType
from graphql import GraphQLResolveInfo

from eventray.platform.errors import InvalidCommand, NotFound
from eventray.serving.api.loaders import DataLoader, by_key
from eventray.serving.bank import policy
from eventray.serving.bank.money import serialize_money

__all__ = ["BINDABLES", "make_loaders"]

query = QueryType()
user_type = ObjectType("User")
account_type = ObjectType("Account")
activity_type = ObjectType("Activity")


# --- context -------------------------------------------------------------------------------


def make_loaders(context: dict[str, Any]) -> dict[str, DataLoader[Any, Any]]:
    """Per-request loaders for fields that would otherwise query once per row."""
    services, q = context["services"], context["app"].queries

    async def users(ids: Sequence[str]) -> list[Any]:
        return by_key(await q.users_by_ids(services.pool, ids), ids, "user_id")

    async def accounts(ids: Sequence[str]) -> list[Any]:
        return by_key(await q.accounts_by_ids(services.pool, ids), ids, "account_id")

    async def accounts_of(owner_ids: Sequence[str]) -> list[Any]:
        import asyncio

        return await asyncio.gather(*(q.accounts_by_owner(services.pool, o) for o in owner_ids))

    return {"users": DataLoader(users), "accounts": DataLoader(accounts), "accounts_of": DataLoader(accounts_of)}


def _ctx(info: GraphQLResolveInfo) -> tuple[Any, Any, dict[str, Any]]:
    c = info.context
    return c["services"], c["principal"], c


def _page_size(services: Any, first: int) -> int:
    if not 1 <= first <= services.serving.max_page_size:
        raise InvalidCommand(f"first must be between 1 and {services.serving.max_page_size}", field="first")
    return first


def _page(page: Any) -> dict[str, Any]:
    return {"items": page.items, "pageInfo": {"endCursor": page.end_cursor, "hasNextPage": page.has_next_page}}


# --- queries -------------------------------------------------------------------------------


@query.field("user")
async def resolve_user(_: Any, info: GraphQLResolveInfo, id: str) -> Any:
    services, principal, c = _ctx(info)
    policy.require_user(principal, id)
    return await c["loaders"]["users"].load(id)


async def _search(info: GraphQLResolveInfo, *, prefix: str | None, contains: str | None,
                  status: str | None, first: int, after: str | None) -> dict[str, Any]:
    services, principal, c = _ctx(info)
    policy.require_staff(principal, "read the user directory")
    page = await c["app"].queries.search_users(
        services.pool, prefix=prefix, contains=contains, status=status.lower() if status else None,
        first=_page_size(services, first), after=after)
    for row in page.items:
        c["loaders"]["users"].prime(row.user_id, row)
    return _page(page)


@query.field("users")
async def resolve_users(_: Any, info: GraphQLResolveInfo, filter: dict[str, Any] | None = None,
                        first: int = 20, after: str | None = None) -> dict[str, Any]:
    f = filter or {}
    return await _search(info, prefix=f.get("prefix"), contains=f.get("contains"), status=f.get("status"),
                         first=first, after=after)


@query.field("searchUsers")
async def resolve_search_users(_: Any, info: GraphQLResolveInfo, text: str, status: str | None = None,
                               first: int = 20, after: str | None = None) -> dict[str, Any]:
    return await _search(info, prefix=None, contains=text, status=status, first=first, after=after)


@query.field("account")
async def resolve_account(_: Any, info: GraphQLResolveInfo, id: str, consistent: bool = False) -> Any:
    services, principal, c = _ctx(info)
    if consistent:
        await policy.require_account(principal, id, c["app"].owners)
        found = await services.reads.read(id)
        if found is None:
            return None
        state, version = found
        if not hasattr(state, "owner_id"):
            raise NotFound(f"{id!r} is not an account")
        return {"account_id": id, "owner_id": state.owner_id, "currency": state.currency,
                "balance": state.balance, "status": state.status.value, "version": version}
    row = await c["loaders"]["accounts"].load(id)
    if principal.role == "customer" and (row is None or row.owner_id != principal.subject):
        raise policy.denied(f"access account {id!r}")
    return row


@query.field("accounts")
async def resolve_accounts(_: Any, info: GraphQLResolveInfo, ownerId: str) -> Any:
    services, principal, c = _ctx(info)
    policy.require_user(principal, ownerId)
    return await c["loaders"]["accounts_of"].load(ownerId)


@query.field("accountActivity")
async def resolve_account_activity(_: Any, info: GraphQLResolveInfo, accountId: str, first: int = 20,
                                   after: str | None = None) -> dict[str, Any]:
    services, principal, c = _ctx(info)
    await policy.require_account(principal, accountId, c["app"].owners)
    return _page(await c["app"].queries.account_activity(
        services.pool, accountId, first=_page_size(services, first), after=after))


@query.field("alerts")
async def resolve_alerts(_: Any, info: GraphQLResolveInfo, accountId: str, first: int = 20) -> list[dict[str, Any]]:
    services, principal, c = _ctx(info)
    await policy.require_account(principal, accountId, c["app"].owners)
    first = _page_size(services, first)
    rows = await c["app"].queries.alerts(services.pool, accountId, first=first)
    return [{"accountId": r.account_id, "at": r.at.isoformat(), "amount": r.amount, "score": r.score,
             "zscore": r.zscore, "reason": r.reason, "modelVersion": r.model_version} for r in rows]


@query.field("supportInbox")
async def resolve_support_inbox(_: Any, info: GraphQLResolveInfo, userId: str | None = None,
                                first: int = 20) -> list[dict[str, Any]]:
    services, principal, c = _ctx(info)
    if principal.role == "customer":
        userId = userId or principal.subject
        policy.require_user(principal, userId)
    elif principal.role not in ("admin", "teller"):  # private messages: not even dev's anonymous reads
        raise policy.denied("read the support inbox (staff; a customer reads their own messages)")
    rows = await c["app"].queries.support_messages(services.pool, user_id=userId, first=_page_size(services, first))
    return [{"id": r.message_id, "userId": r.user_id, "sentAt": r.sent_at.isoformat(), "body": r.body,
             "topic": r.topic, "sentiment": r.sentiment, "entities": r.entities, "keywords": r.keywords,
             "summary": r.summary, "modelVersions": r.model_versions, "analysisError": r.analysis_error}
            for r in rows]


# --- object fields -------------------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


user_type.set_field("id", lambda u, *_: _get(u, "user_id"))
user_type.set_field("status", lambda u, *_: str(_get(u, "status")).upper())
user_type.set_field("bio", lambda u, *_: _get(u, "bio") or "")


@user_type.field("accounts")
async def resolve_user_accounts(user: Any, info: GraphQLResolveInfo) -> Any:
    return await info.context["loaders"]["accounts_of"].load(_get(user, "user_id"))


@user_type.field("totals")
async def resolve_user_totals(user: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    services = info.context["services"]
    totals = await info.context["app"].queries.owner_totals(services.pool, _get(user, "user_id"))
    return [{"currency": t.currency, "balance": serialize_money(t.balance), "accounts": t.accounts}
            for t in (totals or [])]


@user_type.field("identityVerification")
async def resolve_user_identity_verification(user: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    user_id = _get(user, "user_id")
    found = await info.context["services"].reads.read(user_id)
    if found is None or not hasattr(found[0], "kyc"):
        raise NotFound(f"user {user_id!r} has no state on its shard")
    state = found[0]
    return {"status": state.kyc.name, "submission": state.kyc_submission, "reason": state.kyc_reason or None}


account_type.set_field("id", lambda a, *_: _get(a, "account_id"))
account_type.set_field("ownerId", lambda a, *_: _get(a, "owner_id"))
account_type.set_field("status", lambda a, *_: str(_get(a, "status")).upper())


@account_type.field("owner")
async def resolve_account_owner(account: Any, info: GraphQLResolveInfo) -> Any:
    _, principal, c = _ctx(info)
    owner_id = _get(account, "owner_id")
    policy.require_user(principal, owner_id)
    return await c["loaders"]["users"].load(owner_id)


@account_type.field("activity")
async def resolve_account_activity_field(account: Any, info: GraphQLResolveInfo, first: int = 20,
                                         after: str | None = None) -> dict[str, Any]:
    services = info.context["services"]
    return _page(await info.context["app"].queries.account_activity(
        services.pool, _get(account, "account_id"), first=_page_size(services, first), after=after))


activity_type.set_field("accountId", lambda a, *_: a.account_id)
activity_type.set_field("balanceAfter", lambda a, *_: a.balance_after)
activity_type.set_field("transferId", lambda a, *_: a.transfer_id)


BINDABLES = (query, user_type, account_type, activity_type)
