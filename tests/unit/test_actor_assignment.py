"""How partitions are split between runner and coordinator actors (pure; no services)."""

from __future__ import annotations

import pytest

from eventray.platform.projections.actor import runner_assignment
from eventray.platform.sagas.composition import coordinator_assignment
from eventray.platform.sagas.settings import SagaSettings
from eventray.platform.settings import Settings


@pytest.mark.parametrize(("runners", "expected"), [
    (0, [[0], [1], [2], [3]]),          # the default: one per partition
    (2, [[0, 2], [1, 3]]),
    (1, [[0, 1, 2, 3]]),
    (3, [[0, 3], [1], [2]]),
    (9, [[0], [1], [2], [3]]),          # more runners than partitions is one per partition
])
def test_runner_i_owns_the_partitions_p_with_p_mod_runners_equal_i(runners: int, expected: list[list[int]]) -> None:
    assert runner_assignment(Settings(partitions=4, projection_runners=runners)) == expected


@pytest.mark.parametrize(("partitions", "coordinators", "expected"), [
    (2, 2, [[0], [1]]),                 # the defaults
    (4, 2, [[0, 2], [1, 3]]),
    (4, 1, [[0, 1, 2, 3]]),
    (2, 5, [[0], [1]]),                 # never more coordinators than saga partitions
])
def test_coordinator_assignment(partitions: int, coordinators: int, expected: list[list[int]]) -> None:
    assert coordinator_assignment(SagaSettings(partitions=partitions, coordinators=coordinators)) == expected


def test_every_partition_has_exactly_one_owner_for_any_count() -> None:
    for n in range(1, 10):
        parts = [p for owned in runner_assignment(Settings(partitions=7, projection_runners=n)) for p in owned]
        assert sorted(parts) == list(range(7))
