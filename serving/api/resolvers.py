"""Query and mutation resolvers: short delegations to the services and the policy.

The read side is ``eventray.projections.queries`` over the replica's read pool; consistent
reads go to the shards; commands go through the command bus. Rows come back as msgspec
Structs; the views below only rename fields for the schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ariadne import InterfaceType, MutationType, ObjectType, QueryType, UnionType
from graphql import GraphQLResolveInfo

from eventray.aggregates.account import OpenAccount
from eventray.platform.errors import EventrayError, InvalidCommand, NotFound
from eventray.serving.api import policy
from eventray.serving.api.commands import SPECS, build_command, serialize_money
from eventray.serving.api.errors import command_result, error_result, resolve_command_result_type
from eventray.serving.api.loaders import DataLoader, by_key
from eventray.serving.api.services import ApiServices

query = QueryType()
mutation = MutationType()
user_type = ObjectType("User")
account_type = ObjectType("Account")
activity_type = ObjectType("Activity")
command_result_type = UnionType("CommandResult", resolve_command_result_type)
command_error_type = InterfaceType("CommandError", resolve_command_result_type)


# --- context -------------------------------------------------------------------------------


def make_loaders(services: ApiServices) -> dict[str, DataLoader[Any, Any]]:
    """Per-request loaders for fields that would otherwise query once per row."""
    q: Any = services.queries if _has_read_side(services) else None

    async def users(ids: Sequence[str]) -> list[Any]:
        return by_key(await q.users_by_ids(services.pool, ids), ids, "user_id")

    async def accounts(ids: Sequence[str]) -> list[Any]:
        return by_key(await q.accounts_by_ids(services.pool, ids), ids, "account_id")

    async def accounts_of(owner_ids: Sequence[str]) -> list[Any]:
        import asyncio

        return await asyncio.gather(*(q.accounts_by_owner(services.pool, o) for o in owner_ids))

    return {"users": DataLoader(users), "accounts": DataLoader(accounts), "accounts_of": DataLoader(accounts_of)}


def _has_read_side(services: ApiServices) -> bool:
    try:
        services.queries
    except EventrayError:
        return False
    return True


def _ctx(info: GraphQLResolveInfo) -> tuple[ApiServices, policy.Principal, dict[str, Any]]:
    c = info.context
    return c["services"], c["principal"], c


def _page_size(services: ApiServices, first: int) -> int:
    if not 1 <= first <= services.serving.max_page_size:
        raise InvalidCommand(f"first must be between 1 and {services.serving.max_page_size}", field="first")
    return first


def _page(page: Any) -> dict[str, Any]:
    return {"items": page.items, "pageInfo": {"endCursor": page.end_cursor, "hasNextPage": page.has_next_page}}


# --- queries -------------------------------------------------------------------------------


@query.field("me")
def resolve_me(_: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    _, principal, c = _ctx(info)
    return {"subject": principal.subject, "role": principal.role.upper(), "requestId": c["request_id"]}


@query.field("user")
async def resolve_user(_: Any, info: GraphQLResolveInfo, id: str) -> Any:
    services, principal, c = _ctx(info)
    policy.require_user(principal, id)
    services.queries
    return await c["loaders"]["users"].load(id)


async def _search(info: GraphQLResolveInfo, *, prefix: str | None, contains: str | None,
                  status: str | None, first: int, after: str | None) -> dict[str, Any]:
    services, principal, c = _ctx(info)
    policy.require_staff(principal, "read the user directory")
    page = await services.queries.search_users(
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
        await policy.require_account(principal, id, services.owners)
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
    services.queries
    return await c["loaders"]["accounts_of"].load(ownerId)


@query.field("accountActivity")
async def resolve_account_activity(_: Any, info: GraphQLResolveInfo, accountId: str, first: int = 20,
                                   after: str | None = None) -> dict[str, Any]:
    services, principal, _c = _ctx(info)
    await policy.require_account(principal, accountId, services.owners)
    return _page(await services.queries.account_activity(
        services.pool, accountId, first=_page_size(services, first), after=after))


@query.field("projections")
async def resolve_projections(_: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    services, principal, _c = _ctx(info)
    policy.require_admin(principal, "read projection status")
    return [{"name": p.name, "version": p.version, "lag": p.lag, "deadLetters": p.dead_letters,
             "status": p.status} for p in await services.queries.projection_status(services.pool)]


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
    totals = await services.queries.owner_totals(services.pool, _get(user, "user_id"))
    return [{"currency": t.currency, "balance": serialize_money(t.balance), "accounts": t.accounts}
            for t in (totals or [])]


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
    return _page(await services.queries.account_activity(
        services.pool, _get(account, "account_id"), first=_page_size(services, first), after=after))


activity_type.set_field("accountId", lambda a, *_: a.account_id)
activity_type.set_field("balanceAfter", lambda a, *_: a.balance_after)
activity_type.set_field("transferId", lambda a, *_: a.transfer_id)


# --- mutations -----------------------------------------------------------------------------


async def _prepare(info: GraphQLResolveInfo, name: str, raw: dict[str, Any]) -> Any:
    """The authorized command, or a ``CommandResult`` error member."""
    services, principal, c = _ctx(info)
    spec = SPECS[name]
    try:
        cmd = build_command(name, raw, subject=principal.subject, correlation_id=c["request_id"])
        await policy.authorize_command(principal, cmd, services.owners)
    except EventrayError as e:
        services.metrics.observe_command(spec.command.__name__, e.code)
        return error_result(e, command_id=raw.get("commandId"), aggregate_id=raw.get(spec.id_field))
    return cmd


def _finish(services: ApiServices, cmd: Any, outcome: Any) -> dict[str, Any]:
    services.metrics.observe_command(type(cmd).__name__, outcome.error_code or "ok")
    if outcome.ok and isinstance(cmd, OpenAccount):
        services.owners.remember(cmd.aggregate_id, cmd.owner_id)
    return command_result(outcome)


def _command_mutation(name: str) -> None:
    async def resolve(_: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        prepared = await _prepare(info, name, input)
        if isinstance(prepared, dict):
            return prepared
        services = info.context["services"]
        return _finish(services, prepared, await services.bus.send(prepared))

    mutation.set_field(name, resolve)


for _name in SPECS:
    _command_mutation(_name)


@mutation.field("submitCommands")
async def resolve_submit_commands(_: Any, info: GraphQLResolveInfo, commands: list[dict[str, Any]]) -> list[Any]:
    services = info.context["services"]
    limit = services.serving.max_batch_commands
    if len(commands) > limit:
        raise InvalidCommand(f"at most {limit} commands per submitCommands call", field="commands")
    results: list[Any] = []
    to_send: list[tuple[int, Any]] = []
    for entry in commands:
        (name, raw), = entry.items()  # @oneOf: exactly one field is set
        prepared = await _prepare(info, name, raw)
        results.append(prepared)
        if not isinstance(prepared, dict):
            to_send.append((len(results) - 1, prepared))
    outcomes = await services.bus.send_many([cmd for _, cmd in to_send])
    for (i, cmd), outcome in zip(to_send, outcomes):
        results[i] = _finish(services, cmd, outcome)
    return results
