"""The event index every app gets: its name rules, its coverage of the app's events, and the row
a handler buffers (no services: the COPY goes into a recording cursor)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from typing import Any, Union

import msgspec

import eventray
from eventray.aggregates.account import AccountOpened, MoneyDeposited
from eventray.platform.composition import Runtime
from eventray.platform.projections import BatchWrites, Projection
from eventray.platform.projections.event_index import COLUMNS, event_index, event_index_name

BANK = Runtime.load()


class Ping(eventray.Command, frozen=True, kw_only=True):
    pass


class Pinged(eventray.Event, frozen=True, kw_only=True):
    pass


class Ponged(eventray.Event, frozen=True, kw_only=True):
    n: int = 0


def _app(name: str, **kw: Any) -> eventray.App:
    agg = eventray.AggregateType(name="A", state_type=msgspec.Struct, decide=lambda s, c: (Pinged(),),
                                 evolve=lambda s, e: s, commands=(Ping,), events=(Pinged, Ponged))
    return eventray.App(name, aggregates=[agg], **kw)


def test_the_index_is_named_after_the_app_and_fits_a_projection_name() -> None:
    assert event_index_name("shop") == "shop_event_index"
    assert event_index_name("my-shop") == "my_shop_event_index"
    long = "a" + "-b" * 20  # 41 characters, the longest app name
    name = event_index_name(long)
    assert len(name) == 41 and name.endswith("_event_index") and name.startswith("a_b_b")
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name)
    app = _app(long)
    assert list(app.projections)[-1] == name
    app.projection(name)()  # the definition's own checks pass (name, tables, schema_sql)


def test_every_app_gets_its_own_index_after_its_projections_unless_it_opts_out() -> None:
    bank = BANK.app
    assert list(bank.projections) == ["user_directory", "account_balances", "account_activity", "alerts",
                                      "support_inbox", "bank_event_index"]
    shop, other = _app("shop").projection("shop_event_index"), _app("other").projection("other_event_index")
    assert shop is not other and issubclass(shop, Projection)
    assert set(shop._handlers) == {Pinged, Ponged} and set(other._handlers) == {Pinged, Ponged}
    plain = _app("shop", event_index=False)
    assert list(plain.projections) == []
    made = event_index(plain)  # the factory alone: a fresh class each time
    assert made.name == made.__name__ == "shop_event_index" and made is not event_index(plain)


def test_the_index_handles_every_event_type_of_the_app() -> None:
    cls = BANK.app.projection("bank_event_index")
    assert set(cls._handlers) == set(BANK.app.event_types)
    assert set(cls().handlers) == set(BANK.app.event_types)
    ddl = cls().ddl("proj_bank_event_index_v1")
    assert 'PRIMARY KEY (partition, "offset")' in ddl
    assert '"proj_bank_event_index_v1".events (aggregate_type, aggregate_id, version)' in ddl
    assert "(correlation_id)" in ddl and "(command_id text_pattern_ops)" in ddl


class _Recording:
    """A cursor that records COPY statements and their rows."""

    def __init__(self) -> None:
        self.copies: list[tuple[Any, list[list[Any]]]] = []

    @contextlib.contextmanager
    def copy(self, statement: Any):
        rows: list[Any] = []
        self.copies.append((statement, rows))
        yield type("Copy", (), {"write_row": staticmethod(rows.append)})()

    def executemany(self, *a: Any) -> None:
        raise AssertionError("the index only appends")


def test_a_handler_writes_the_event_and_its_envelope_as_one_row() -> None:
    cls = BANK.app.projection("bank_event_index")
    projection = cls()
    events = [AccountOpened(owner_id="u-1", currency="EUR"), MoneyDeposited(amount=250, balance_after=250)]
    values = [BANK.codec.encode(e, aggregate_type="Account", aggregate_id="a-1", version=v + 1,
                                timestamp=1_700_000_000_123 + v, command_id=f"cmd-{v}", correlation_id="req-9",
                                subject="alice") for v, e in enumerate(events)]
    decoded = BANK.codec.decode_many([(40 + i, b"a-1", v) for i, v in enumerate(values)], partition=3)
    out = BatchWrites(projection.tables)
    for record in decoded:
        projection.handlers[type(record.event)](record, out)
    assert len(out) == 2
    cursor = _Recording()
    out.flush(cursor, "proj_bank_event_index_v1")
    (statement, rows), = cursor.copies
    assert "COPY" in repr(statement) and all(f"'{c}'" in repr(statement) for c in COLUMNS)
    row = dict(zip(COLUMNS, rows[1]))
    payload = row.pop("payload")
    assert row == {"partition": 3, "offset": 41, "aggregate_type": "Account", "aggregate_id": "a-1", "version": 2,
                   "event_type": "MoneyDeposited",
                   "ts": dt.datetime(2023, 11, 14, 22, 13, 20, 124_000, tzinfo=dt.timezone.utc),
                   "command_id": "cmd-1", "correlation_id": "req-9", "subject": "alice"}
    assert isinstance(payload, str)  # JSON text: COPY hands it to the jsonb column as is
    assert msgspec.json.decode(payload) == {"type": "MoneyDeposited", "amount": 250, "balance_after": 250}
    union = Union[tuple(BANK.app.aggregates[1].events)]  # type: ignore[misc]
    assert msgspec.json.decode(payload, type=union) == events[1]
    assert msgspec.json.decode(dict(zip(COLUMNS, rows[0]))["payload"], type=union) == events[0]

