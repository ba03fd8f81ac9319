"""The chaos monkey's generic invariant over the committed log: lost and applied-twice commands."""

from __future__ import annotations

from eventray.platform.chaos.monkey import Acked, check_log


def test_a_clean_log_has_nothing_lost_or_twice() -> None:
    records = {"c1": [("a", 1, "e1")], "c2": [("a", 2, "e2"), ("a", 3, "e3")]}
    acked = {"c1": Acked(aggregate_id="a", version=1, events=1), "c2": Acked(aggregate_id="a", version=3, events=2),
             "noop": Acked(aggregate_id="a", version=3, events=0)}
    assert check_log(records, acked) == ([], [])


def test_an_acknowledged_command_missing_from_the_log_is_lost() -> None:
    acked = {"c1": Acked(aggregate_id="a", version=1, events=1), "c2": Acked(aggregate_id="a", version=3, events=2)}
    lost, twice = check_log({"c2": [("a", 2, "e2")]}, acked)
    assert lost == ["c1", "c2"] and twice == []


def test_a_command_applied_again_is_found_twice() -> None:
    acked = {"c1": Acked(aggregate_id="a", version=1, events=1)}
    assert check_log({"c1": [("a", 1, "e1"), ("a", 4, "e9")]}, acked)[1] == ["c1"]
    assert check_log({"c1": [("a", 1, "e1"), ("a", 1, "e1")]}, acked)[1] == ["c1"]
    assert check_log({"c9": [("a", 1, "e1"), ("b", 1, "e2")]}, {})[1] == ["c9"]
