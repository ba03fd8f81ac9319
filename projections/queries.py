"""The read API over the projections' current versions, for GraphQL resolvers and DataLoaders.

Every function is async, takes a :class:`psycopg_pool.AsyncConnectionPool` and returns
msgspec Structs. They read the *current* version of each projection, so a rebuild
(``eventray replay NAME``) is invisible to callers: before the atomic switch they read the old
version, after it the new one.

Pagination is keyset-based: a page's ``end_cursor`` is an opaque string; pass it back as
``after`` for the next page.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import msgspec
from psycopg import sql

from eventray.platform.errors import InvalidCommand
from eventray.platform.projections.reads import ProjectionUnavailable, read_current

__all__ = [
    "AccountRow",
    "ActivityRow",
    "AlertRow",
    "InvalidCursor",
    "OwnerTotal",
    "Page",
    "ProjectionUnavailable",
    "UserRow",
    "account_activity",
    "accounts_by_ids",
    "alerts",
    "accounts_by_owner",
    "get_account",
    "get_user",
    "owner_totals",
    "search_users",
    "support_messages",
    "SupportMessageRow",
    "users_by_ids",
]

T = TypeVar("T")

MAX_PAGE = 200

USERS = "user_directory"
BALANCES = "account_balances"
ACTIVITY = "account_activity"
ALERTS = "alerts"
INBOX = "support_inbox"


class InvalidCursor(InvalidCommand):
    """The pagination cursor was not produced by this API (or belongs to another query)."""

    code = "INVALID_CURSOR"


class UserRow(msgspec.Struct, frozen=True, kw_only=True):
    """A user in the directory."""

    user_id: str
    name: str
    email: str
    bio: str
    status: str  # "active" | "deactivated"
    version: int


class AccountRow(msgspec.Struct, frozen=True, kw_only=True):
    """An account's balance (minor units), status and version."""

    account_id: str
    owner_id: str
    currency: str
    balance: int
    status: str  # "active" | "frozen" | "closed"
    version: int


class OwnerTotal(msgspec.Struct, frozen=True, kw_only=True):
    """The sum of an owner's balances in one currency."""

    owner_id: str
    currency: str
    balance: int
    accounts: int


class ActivityRow(msgspec.Struct, frozen=True, kw_only=True):
    """One money movement of an account.

    ``id`` is the log position (``"<partition>:<offset>"``), unique and stable across
    rebuilds; ``seq`` is the account's version after the movement (newest first = highest).
    """

    account_id: str
    id: str
    seq: int
    kind: str  # "deposit" | "withdrawal" | "transfer_out" | "transfer_in" | "transfer_refund"
    amount: int
    balance_after: int
    at: dt.datetime
    correlation_id: str | None
    transfer_id: str | None = None  # set on transfer_out / transfer_in / transfer_refund
    counterparty: str | None = None  # the other account of that transfer


class AlertRow(msgspec.Struct, frozen=True, kw_only=True):
    """A flagged money movement: the anomaly model's score, the amount's z-score, and why."""

    account_id: str
    at: dt.datetime
    kind: str  # "deposit" | "withdrawal" | "transfer_out" | "transfer_in"
    amount: int
    score: float  # > 0: the model calls it an outlier
    zscore: float
    reason: str  # "model", "zscore" or "model+zscore"
    model_version: str


class SupportMessageRow(msgspec.Struct, frozen=True, kw_only=True):
    """A support message and what the text models read in it (labels are ``{label, score}``;
    all empty, with ``analysis_error`` set, when the models refused the text)."""

    message_id: str
    user_id: str
    sent_at: dt.datetime
    body: str
    topic: dict[str, Any] | None
    sentiment: dict[str, Any] | None
    entities: list[dict[str, Any]]
    keywords: list[dict[str, Any]]
    summary: list[str]
    model_versions: dict[str, str]
    analysis_error: str | None


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """A page of a keyset-paginated list."""

    items: list[T]
    end_cursor: str | None
    has_next_page: bool


# --- cursors -------------------------------------------------------------------------------

_cursor_encoder = msgspec.msgpack.Encoder()
_cursor_decoder = msgspec.msgpack.Decoder(tuple[str, Any, Any])


def _encode_cursor(kind: str, *parts: Any) -> str:
    return base64.urlsafe_b64encode(_cursor_encoder.encode((kind, *parts))).decode().rstrip("=")


def _decode_cursor(kind: str, cursor: str) -> tuple[Any, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got = _cursor_decoder.decode(raw)
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidCursor(f"not a valid cursor: {cursor!r}", field="after") from e
    if got[0] != kind:
        raise InvalidCursor(f"this cursor belongs to another list ({got[0]})", field="after")
    return got[1:]


def _limit(first: int) -> int:
    if type(first) is not int or not 1 <= first <= MAX_PAGE:
        raise InvalidCommand(f"first must be between 1 and {MAX_PAGE}, got {first!r}", field="first")
    return first


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- users ---------------------------------------------------------------------------------

_USER_COLS = sql.SQL("user_id, name, email, bio, status, version")


def _user(row: Sequence[Any]) -> UserRow:
    return UserRow(user_id=row[0], name=row[1], email=row[2], bio=row[3], status=row[4], version=row[5])


async def get_user(pool: Any, user_id: str) -> UserRow | None:
    """The user ``user_id``, or ``None``."""

    async def q(conn: Any, schema: str) -> UserRow | None:
        cur = await conn.execute(
            sql.SQL("SELECT {} FROM {}.users WHERE user_id = %s").format(_USER_COLS, sql.Identifier(schema)),
            (user_id,),
        )
        row = await cur.fetchone()
        return None if row is None else _user(row)

    return await read_current(pool, USERS, q)


async def users_by_ids(pool: Any, ids: Sequence[str]) -> list[UserRow | None]:
    """The users with ``ids``, in the same order, ``None`` where missing (DataLoader batch)."""
    if not ids:
        return []

    async def q(conn: Any, schema: str) -> list[UserRow | None]:
        cur = await conn.execute(
            sql.SQL("SELECT {} FROM {}.users WHERE user_id = ANY(%s)").format(_USER_COLS, sql.Identifier(schema)),
            (list(ids),),
        )
        found = {row[0]: _user(row) for row in await cur.fetchall()}
        return [found.get(i) for i in ids]

    return await read_current(pool, USERS, q)


async def search_users(
    pool: Any,
    *,
    prefix: str | None = None,
    contains: str | None = None,
    status: str | None = None,
    first: int = 20,
    after: str | None = None,
) -> Page[UserRow]:
    """Users whose name starts with ``prefix`` and/or contains ``contains`` (case-insensitive),
    optionally only those with ``status``, ordered by name then id.

    Raises:
        InvalidCommand: ``first`` is out of range; InvalidCursor: ``after`` is not a cursor
            of this list.
    """
    limit = _limit(first)
    where = [sql.SQL("TRUE")]
    params: list[Any] = []
    if prefix:
        where.append(sql.SQL("name_key LIKE %s"))
        params.append(_like_escape(prefix.lower()) + "%")
    if contains:
        where.append(sql.SQL("name_key LIKE %s"))
        params.append("%" + _like_escape(contains.lower()) + "%")
    if status is not None:
        where.append(sql.SQL("status = %s"))
        params.append(status)
    if after is not None:
        key, uid = _decode_cursor("users", after)
        where.append(sql.SQL("(name_key, user_id) > (%s, %s)"))
        params.extend([key, uid])
    params.append(limit + 1)

    async def q(conn: Any, schema: str) -> Page[UserRow]:
        cur = await conn.execute(
            sql.SQL("SELECT {}, name_key FROM {}.users WHERE {} ORDER BY name_key, user_id LIMIT %s").format(
                _USER_COLS, sql.Identifier(schema), sql.SQL(" AND ").join(where)
            ),
            params,
        )
        rows = await cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        end = _encode_cursor("users", rows[-1][6], rows[-1][0]) if rows else None
        return Page(items=[_user(r) for r in rows], end_cursor=end, has_next_page=more)

    return await read_current(pool, USERS, q)


# --- accounts ------------------------------------------------------------------------------

_ACCOUNT_COLS = sql.SQL("account_id, owner_id, currency, balance, status, version")


def _account(row: Sequence[Any]) -> AccountRow:
    return AccountRow(account_id=row[0], owner_id=row[1], currency=row[2], balance=row[3], status=row[4],
                      version=row[5])


async def get_account(pool: Any, account_id: str) -> AccountRow | None:
    """The account ``account_id``, or ``None``."""

    async def q(conn: Any, schema: str) -> AccountRow | None:
        cur = await conn.execute(
            sql.SQL("SELECT {} FROM {}.accounts WHERE account_id = %s").format(_ACCOUNT_COLS, sql.Identifier(schema)),
            (account_id,),
        )
        row = await cur.fetchone()
        return None if row is None else _account(row)

    return await read_current(pool, BALANCES, q)


async def accounts_by_ids(pool: Any, ids: Sequence[str]) -> list[AccountRow | None]:
    """The accounts with ``ids``, in the same order, ``None`` where missing (DataLoader batch)."""
    if not ids:
        return []

    async def q(conn: Any, schema: str) -> list[AccountRow | None]:
        cur = await conn.execute(
            sql.SQL("SELECT {} FROM {}.accounts WHERE account_id = ANY(%s)").format(
                _ACCOUNT_COLS, sql.Identifier(schema)),
            (list(ids),),
        )
        found = {row[0]: _account(row) for row in await cur.fetchall()}
        return [found.get(i) for i in ids]

    return await read_current(pool, BALANCES, q)


async def accounts_by_owner(pool: Any, owner_id: str) -> list[AccountRow]:
    """The accounts of ``owner_id`` (a user id), ordered by account id."""

    async def q(conn: Any, schema: str) -> list[AccountRow]:
        cur = await conn.execute(
            sql.SQL("SELECT {} FROM {}.accounts WHERE owner_id = %s ORDER BY account_id").format(
                _ACCOUNT_COLS, sql.Identifier(schema)),
            (owner_id,),
        )
        return [_account(r) for r in await cur.fetchall()]

    return await read_current(pool, BALANCES, q)


async def owner_totals(pool: Any, owner_id: str) -> list[OwnerTotal]:
    """``owner_id``'s total balance per currency (closed accounts hold zero), by currency."""

    async def q(conn: Any, schema: str) -> list[OwnerTotal]:
        cur = await conn.execute(
            sql.SQL("SELECT owner_id, currency, balance, accounts FROM {}.owner_totals "
                    "WHERE owner_id = %s ORDER BY currency").format(sql.Identifier(schema)),
            (owner_id,),
        )
        return [OwnerTotal(owner_id=r[0], currency=r[1], balance=int(r[2]), accounts=int(r[3]))
                for r in await cur.fetchall()]

    return await read_current(pool, BALANCES, q)


# --- activity ------------------------------------------------------------------------------


def _activity(row: Sequence[Any]) -> ActivityRow:
    return ActivityRow(account_id=row[0], id=f"{row[1]}:{row[2]}", seq=row[3], kind=row[4], amount=row[5],
                       balance_after=row[6], at=row[7], correlation_id=row[8], transfer_id=row[9],
                       counterparty=row[10])


async def account_activity(pool: Any, account_id: str, *, first: int = 20, after: str | None = None
                           ) -> Page[ActivityRow]:
    """The money movements of ``account_id``, newest first."""
    limit = _limit(first)
    before: int | None = None
    if after is not None:
        (before, _) = _decode_cursor("activity", after)
        if type(before) is not int:
            raise InvalidCursor("not a valid activity cursor", field="after")

    async def q(conn: Any, schema: str) -> Page[ActivityRow]:
        cur = await conn.execute(
            sql.SQL("SELECT account_id, log_partition, log_offset, seq, kind, amount, balance_after, at, "
                    "correlation_id, transfer_id, counterparty FROM {}.activity WHERE account_id = %s AND seq < %s "
                    "ORDER BY seq DESC LIMIT %s").format(sql.Identifier(schema)),
            (account_id, before if before is not None else 2**62, limit + 1),
        )
        rows = await cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        end = _encode_cursor("activity", rows[-1][3], None) if rows else None
        return Page(items=[_activity(r) for r in rows], end_cursor=end, has_next_page=more)

    return await read_current(pool, ACTIVITY, q)


# --- alerts --------------------------------------------------------------------------------


async def alerts(pool: Any, account_id: str, *, first: int = 20) -> list[AlertRow]:
    """The alerts raised on ``account_id``'s movements, newest first (at most ``first``)."""
    limit = _limit(first)

    async def q(conn: Any, schema: str) -> list[AlertRow]:
        cur = await conn.execute(
            sql.SQL("SELECT account_id, at, kind, amount, score, zscore, reason, model_version FROM {}.alerts "
                    "WHERE account_id = %s ORDER BY at DESC, log_offset DESC LIMIT %s").format(sql.Identifier(schema)),
            (account_id, limit),
        )
        return [AlertRow(account_id=r[0], at=r[1], kind=r[2], amount=r[3], score=r[4], zscore=r[5], reason=r[6],
                         model_version=r[7]) for r in await cur.fetchall()]

    return await read_current(pool, ALERTS, q)


async def support_messages(pool: Any, *, user_id: str | None = None, first: int = 20) -> list[SupportMessageRow]:
    """The newest support messages (at most ``first``), of ``user_id`` only when given."""
    limit = _limit(first)
    where, params = (sql.SQL("WHERE user_id = %s "), (user_id, limit)) if user_id is not None else (sql.SQL(""),
                                                                                                   (limit,))

    async def q(conn: Any, schema: str) -> list[SupportMessageRow]:
        cur = await conn.execute(
            sql.SQL("SELECT message_id, user_id, sent_at, body, topic, topic_score, sentiment, sentiment_score, "
                    "entities, keywords, summary, model_versions, analysis_error FROM {}.support_messages {}"
                    "ORDER BY sent_at DESC, message_id DESC LIMIT %s").format(sql.Identifier(schema), where),
            params,
        )
        return [SupportMessageRow(
            message_id=r[0], user_id=r[1], sent_at=r[2], body=r[3],
            topic=None if r[4] is None else {"label": r[4], "score": r[5]},
            sentiment=None if r[6] is None else {"label": r[6], "score": r[7]},
            entities=r[8], keywords=r[9], summary=r[10], model_versions=r[11], analysis_error=r[12],
        ) for r in await cur.fetchall()]

    return await read_current(pool, INBOX, q)


# --- status --------------------------------------------------------------------------------
