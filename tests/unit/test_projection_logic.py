"""Projection logic with no services: handlers, batch folding, the runner's poison handling."""

from __future__ import annotations

import pytest

from eventray.aggregates.account import AccountFrozen, AccountOpened, MoneyDeposited, MoneyWithdrawn
from eventray.aggregates.user import ProfileUpdated, UserRegistered
from eventray.platform.composition import Runtime

from eventray.platform.errors import ConfigurationError
from eventray.platform.projections import BatchWrites, Projection, Table
from eventray.platform.projections.runner import PartitionRunner
from eventray.projections import AccountActivity, AccountBalances, UserDirectory

BANK = Runtime.load()


def records(*items: tuple[str, str, int, object]) -> list[tuple[int, bytes, bytes]]:
    codec = BANK.codec
    return [(i, agg.encode(), codec.encode(ev, aggregate_type=t, aggregate_id=agg, version=v, timestamp=1_700_000_000_000))
            for i, (t, agg, v, ev) in enumerate(items)]


def apply(projection: Projection, recs) -> BatchWrites:
    out = BatchWrites(projection.tables)
    for item in BANK.codec.decode_many(recs, partition=0):
        handler = projection.handlers.get(type(item.event))
        if handler:
            handler(item, out)
    return out


def test_updates_fold_into_a_row_created_in_the_same_batch() -> None:
    out = apply(AccountBalances(), records(
        ("Account", "a", 1, AccountOpened(owner_id="u", currency="EUR")),
        ("Account", "a", 2, MoneyDeposited(amount=5, balance_after=5)),
        ("Account", "b", 7, MoneyWithdrawn(amount=1, balance_after=3)),
        ("Account", "b", 8, AccountFrozen(reason="x")),
    ))
    buf = out._tables["accounts"]
    assert buf.created == {("a",): {"account_id": "a", "owner_id": "u", "currency": "EUR", "balance": 5,
                                    "status": "active", "version": 2}}
    assert buf.updated == {("b",): {"balance": 3, "version": 8, "status": "frozen"}}
    assert len(out) == 2


def test_user_directory_keeps_a_search_key() -> None:
    out = apply(UserDirectory(), records(
        ("User", "u1", 1, UserRegistered(name="Ada Lovelace", email="ada@x.io")),
        ("User", "u1", 2, ProfileUpdated(name="Ada King", bio="math")),
    ))
    row = out._tables["users"].created[("u1",)]
    assert (row["name"], row["name_key"], row["bio"], row["version"]) == ("Ada King", "ada king", "math", 2)


def test_activity_is_one_row_per_movement_with_its_log_position() -> None:
    out = apply(AccountActivity(), records(
        ("Account", "a", 1, AccountOpened(owner_id="u", currency="EUR")),
        ("Account", "a", 2, MoneyDeposited(amount=5, balance_after=5)),
        ("Account", "a", 3, MoneyWithdrawn(amount=2, balance_after=3)),
    ))
    rows = out._tables["activity"].appended
    assert [(r[0], r[1], r[2], r[3], r[4], r[7], r[8]) for r in rows] == [
        ("a", 2, "deposit", 5, 5, 0, 1), ("a", 3, "withdrawal", 2, 3, 0, 2)]


def test_a_projection_must_declare_its_tables() -> None:
    class Bad(Projection):
        name = "bad"

    with pytest.raises(ConfigurationError):
        Bad()


class FakeStore:
    def __init__(self) -> None:
        self.batches: list[dict] = []
        self.status: tuple | None = None

    def apply_batch(self, **kw) -> None:
        self.batches.append(kw)

    def set_status(self, name, version, status, reason=None) -> None:
        self.status = (status, reason)


class Exploding(Projection):
    name = "exploding"
    tables = (Table("t", ("id",)),)
    schema_sql = "CREATE TABLE {schema}.t (id text);"

    def __init__(self, on_poison: str) -> None:
        type(self).on_poison = on_poison  # type: ignore[assignment]
        super().__init__()
        self.handlers = {MoneyDeposited: self.deposited}

    def deposited(self, record, out) -> None:
        if record.event.amount == 13:
            raise ValueError("unlucky")
        out.append("t", (record.envelope.aggregate_id,))


@pytest.mark.parametrize("mode", ["skip", "stop"])
def test_poison_records_are_dead_lettered_then_skipped_or_stopped_at(mode: str) -> None:
    recs = records(*[("Account", f"a{i}", 2, MoneyDeposited(amount=13 if i == 2 else 1, balance_after=1))
                     for i in range(5)])
    recs.insert(3, (99, b"k", b"\xc1not msgpack"))
    store = FakeStore()
    runner = PartitionRunner(projection=Exploding(mode), store=store, decode_many=BANK.codec.decode_many,
                             open_reader=lambda p: None, name="exploding", version=1, schema="s", partition=0)
    assert runner.process(recs) is (mode == "skip")
    [batch] = store.batches
    rows = batch["writes"]._tables["t"].appended
    if mode == "skip":
        assert [d.offset for d in batch["dead"]] == [2, 99]
        assert "unlucky" in batch["dead"][0].reason and "bad envelope" in batch["dead"][1].reason
        assert rows == [("a0",), ("a1",), ("a3",), ("a4",)] and batch["next_offset"] == 5
    else:
        assert [d.offset for d in batch["dead"]] == [2] and batch["next_offset"] == 2
        assert rows == [("a0",), ("a1",)] and store.status[0] == "stopped"
