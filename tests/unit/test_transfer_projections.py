"""Transfer rows in account_activity and balances in account_balances (pure handlers)."""

from __future__ import annotations

from eventray.aggregates.account import TransferCredited, TransferDebited, TransferRefunded
from eventray.platform.composition import Runtime

from eventray.platform.projections import BatchWrites
from eventray.projections import AccountActivity, AccountBalances

BANK = Runtime.load()


def _apply(projection, items):
    codec = BANK.codec
    recs = [(i, agg.encode(), codec.encode(ev, aggregate_type="Account", aggregate_id=agg, version=v,
                                           timestamp=1_700_000_000_000))
            for i, (agg, v, ev) in enumerate(items)]
    out = BatchWrites(projection.tables)
    for item in codec.decode_many(recs, partition=0):
        handler = projection.handlers.get(type(item.event))
        if handler:
            handler(item, out)
    return out


ITEMS = [
    ("a", 5, TransferDebited(transfer_id="t1", amount=7, balance_after=3, counterparty="b")),
    ("b", 2, TransferCredited(transfer_id="t1", amount=7, balance_after=7, counterparty="a")),
    ("a", 6, TransferRefunded(transfer_id="t2", amount=1, balance_after=4, counterparty="c", reason="x")),
]


def test_activity_has_a_row_per_transfer_movement_with_its_transfer_and_counterparty() -> None:
    rows = _apply(AccountActivity(), ITEMS)._tables["activity"].appended
    assert [(r[0], r[1], r[2], r[3], r[4], r[9], r[10]) for r in rows] == [
        ("a", 5, "transfer_out", 7, 3, "t1", "b"),
        ("b", 2, "transfer_in", 7, 7, "t1", "a"),
        ("a", 6, "transfer_refund", 1, 4, "t2", "c"),
    ]


def test_balances_follow_transfer_movements() -> None:
    updated = _apply(AccountBalances(), ITEMS)._tables["accounts"].updated
    assert updated == {("a",): {"balance": 4, "version": 6}, ("b",): {"balance": 7, "version": 2}}
