"""Shard actors scale apart from partitions: 2 -> 4 -> 2 actors over 4 partitions under load."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
import ray
from _load import Load, assert_log_exact

from eventray.platform import composition
from eventray.platform.runtime.shard_actor import NAMESPACE

pytestmark = pytest.mark.integration


@pytest.fixture()
def settings(stack_settings):
    s = stack_settings.model_copy(update={
        "topic": f"it-scale-{uuid.uuid4().hex[:8]}", "partitions": 4, "shards": 2, "snapshot_interval_s": 0.5,
    })
    composition.connect_ray(s)
    yield s
    composition.stop_shards(s)


def claims(settings) -> Counter:
    """How many serving shard actors claim each partition right now."""
    counted: Counter = Counter()
    for name in composition.shard_actor_names(settings).values():
        try:
            info = ray.get(ray.get_actor(name, namespace=NAMESPACE).owned.remote(), timeout=2)
        except Exception:  # noqa: BLE001 - starting or being removed: serves nothing
            continue
        if not info["released"] and not info["fenced"]:
            counted.update(info["partitions"])
    return counted


async def test_rescale_2_4_2_while_commands_flow(settings) -> None:
    composition.start_shards(settings)
    load = Load(composition.command_bus(settings), clients=12)
    clients = load.start()
    double: list[Counter] = []

    async def watch() -> None:  # no partition may ever be served by two actors
        while not load.stop.is_set():
            c = await asyncio.to_thread(claims, settings)
            if any(n > 1 for n in c.values()):
                double.append(c)
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    await asyncio.sleep(1.5)
    four = settings.model_copy(update={"shards": 4})
    changes = await asyncio.to_thread(composition.rescale_shards, four)
    assert sum(c.startswith("removed") for c in changes) == 2 and sum(c.startswith("started") for c in changes) == 4
    assert await composition.shard_owners(settings) == {0: 0, 1: 1, 2: 2, 3: 3}
    await asyncio.sleep(1.5)
    assert await asyncio.to_thread(composition.rescale_shards, four) == []  # idempotent
    changes = await asyncio.to_thread(composition.rescale_shards, settings)
    assert sum(c.startswith("removed") for c in changes) == 4 and sum(c.startswith("started") for c in changes) == 2
    assert await composition.shard_owners(settings) == {0: 0, 1: 1, 2: 0, 3: 1}
    await asyncio.sleep(1.5)
    load.stop.set()
    await asyncio.gather(*clients)
    await watcher
    print(f"longest time without an acknowledged command: {load.longest_gap_s(0):.2f}s, retries {load.retries}")

    assert not double, f"a partition had two serving actors: {double[:3]}"
    assert sorted(composition.shard_actor_names(settings)) == [0, 1]
    assert sum(load.deposited.values()) > 100
    assert_log_exact(settings, load)
