"""The Jepsen-style queue checks on hand-made histories: each anomaly is found, a clean one passes."""

from __future__ import annotations

from eventray.platform.sagas.history import Op, check_queue


def poll(*reads):
    return Op("ok", "poll", reads=tuple(reads))


def test_a_clean_history_is_valid() -> None:
    r = check_queue([Op("ok", "send", "a", 0, 0), Op("ok", "send", "b", 0, 1), poll((0, 0, "a"), (0, 1, "b"))])
    assert r.valid and r.counts["reads"] == 2


def test_lost_write_needs_a_read_past_it() -> None:
    r = check_queue([Op("ok", "send", "a", 0, 0), Op("ok", "send", "b", 0, 1), poll((0, 1, "b"))])
    assert r.lost == ["a"]
    # never read past: not (yet) lost
    assert check_queue([Op("ok", "send", "a", 0, 5), poll((0, 1, "b"))]).lost == []
    # no known offset: the final read is complete, so unseen is lost
    assert check_queue([Op("ok", "send", "a"), poll()]).lost == ["a"]


def test_duplicate_is_one_value_at_two_offsets() -> None:
    r = check_queue([Op("ok", "send", "a"), poll((0, 0, "a"), (0, 3, "a"))])
    assert r.duplicated == {"a": [(0, 0), (0, 3)]} and not r.valid
    # the same offset read twice (two polls) is no duplicate
    assert check_queue([Op("ok", "send", "a"), poll((0, 0, "a")), poll((0, 0, "a"))]).valid


def test_aborted_read_is_reading_a_failed_write() -> None:
    r = check_queue([Op("fail", "send", "x", 0, 2), poll((0, 2, "x"))])
    assert r.aborted_read == ["x"]
    # a failed send that a retry wrote again is fine
    assert check_queue([Op("fail", "send", "x"), Op("ok", "send", "x"), poll((0, 4, "x"))]).valid


def test_an_aborted_record_redone_elsewhere_is_no_aborted_read() -> None:
    """A transaction aborted at offset 3 and its retry committed at offset 7, same value id."""
    assert check_queue([Op("fail", "send", "t", 0, 3), poll((0, 7, "t"))]).valid
    assert check_queue([Op("fail", "send", "t", 0, 3), poll((0, 3, "t"))]).aborted_read == ["t"]
