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


def test_the_report_gives_per_kind_the_slowest_time_until_commands_were_acknowledged_again() -> None:
    import asyncio

    from eventray.platform.chaos import monkey
    from eventray.platform.chaos.faults import FaultResult

    report = monkey.MonkeyReport(
        faults=[FaultResult("restart-kafka", "b", 9.0), FaultResult("restart-kafka", "b", 11.0),
                FaultResult("kill-shard", "s", 3.0), FaultResult("pause-kafka", "b", 1.0)],
        flowing=[12.5, 10.0, 3.5, None])
    assert report.slowest_flowing() == {"restart-kafka": 12.5, "kill-shard": 3.5, "pause-kafka": None}
    text = report.render()
    assert "restart-kafka      x2   slowest recovery 11.00s, commands acknowledged again 12.50s" in text
    assert f"pause-kafka        x1   slowest recovery 1.00s, commands not acknowledged within {monkey.FLOWING_WAIT_S:.0f}s" in text

    class Work:  # acknowledges a command 0.2 s after the wait begins
        acked: dict[str, Acked] = {"c0": Acked("a", 1, 1)}

    async def scenario() -> float | None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, Work.acked.__setitem__, "c1", Acked("a", 2, 1))
        return await monkey._next_ack(Work(), loop.time() - 1.0)  # type: ignore[arg-type]

    waited = asyncio.run(scenario())
    assert waited is not None and 1.15 <= waited < 2.0, waited


def test_availability_counts_seconds_with_an_acknowledgement_and_can_leave_fault_windows_out() -> None:
    from eventray.platform.chaos import monkey

    # a 10 s run: acks every 0.5 s, except from 3.0 to 6.0 (a broker restart) and 8.2 to 9.0
    acks = [t / 2 for t in range(20) if not 6 <= t < 12 and not 16 < t < 18]
    report = monkey.MonkeyReport(acked=40, ack_times=[100.0 + t for t in acks], span=(100.0, 110.0),
                                 windows=[("restart-kafka", 102.8, 106.1), ("kill-shard", 108.1, 108.9)])
    share, seconds = report.availability()
    assert (seconds, share) == (10, 0.7)  # seconds 3, 4, 5 had none
    outside, rest = report.availability(monkey.AVAILABILITY_EXCLUDES)
    assert (rest, outside) == (5, 1.0)  # seconds 2-6 overlap the restart's window
    gap, during = report.longest_gap()
    assert abs(gap - 3.5) < 1e-9 and during == "restart-kafka"
    text = report.render()
    assert "command availability: 70.0% of 10 s; 100.0% of the 5 s outside restart-kafka* and disk-full-* windows" in text
    assert "longest gap without an acknowledged command: 3.50s (during: restart-kafka)" in text
    assert "command rate: 4/s over 10s" in text
