"""The shard's metrics observer: state gauges are set again while nothing changes.

Ray's metrics agent drops a gauge series that was not set for two report intervals, so an
idle shard's "aggregates in memory" would vanish from the scrape if it were set only when a
batch is answered.
"""

from __future__ import annotations

import time
from collections import defaultdict
from types import SimpleNamespace

import pytest

from eventray.platform.observability import metrics


class Recorder:
    def __init__(self) -> None:
        self.sets: dict[tuple[str, str], list[float]] = defaultdict(list)

    def __call__(self, key: str) -> SimpleNamespace:
        def record(value: float, tags: dict[str, str]) -> None:
            self.sets[(key, tags["partition"])].append(value)

        return SimpleNamespace(set=record, inc=lambda *a, **k: None, observe=lambda *a, **k: None,
                               _record=lambda *a, **k: None)


@pytest.fixture()
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(metrics, "metric", rec)
    return rec


def test_state_gauges_are_set_again_while_the_shard_is_idle(recorder: Recorder) -> None:
    observer = metrics.ShardMetrics("t", trace=False)
    exporter = metrics.Exporter(interval_s=0.05)  # the actor's one metrics thread
    exporter.add(observer.export)
    observer.recovered(3, seconds=1.25, aggregates=40, checkpoint=100)
    observer.answered(3, [], [], [], aggregates=41, next_offset=130)
    before = {k: len(v) for k, v in recorder.sets.items()}
    time.sleep(0.4)  # idle: no batch, no recovery
    for key in ("aggregates", "recovery", "snapshot_lag"):
        values = recorder.sets[(key, "3")]
        assert len(values) >= before[(key, "3")] + 3, (key, values)
    assert recorder.sets[("aggregates", "3")][-1] == 41
    assert recorder.sets[("recovery", "3")][-1] == 1.25
    assert recorder.sets[("snapshot_lag", "3")][-1] == 30


def test_snapshot_lag_falls_when_a_snapshot_is_saved(recorder: Recorder) -> None:
    observer = metrics.ShardMetrics("t", trace=False)
    observer.recovered(0, seconds=0.1, aggregates=1, checkpoint=0)
    observer.answered(0, [], [], [], aggregates=5, next_offset=50)
    assert recorder.sets[("snapshot_lag", "0")][-1] == 50
    observer.snapshot_saved(0, checkpoint=50)
    assert recorder.sets[("snapshot_lag", "0")][-1] == 0
