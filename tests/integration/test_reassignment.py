"""Shard actors scale apart from partitions: 2 -> 4 -> 2 actors over 4 partitions under load."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
import ray
from _load import Load, assert_log_exact

from eventray.platform.composition import Runtime
from eventray.platform.runtime.actors import NAMESPACE
from eventray.platform.runtime.shards import rescale_shards, shard_group, start_shards, stop_shards

pytestmark = pytest.mark.integration


@pytest.fixture()
def rt(stack_settings):
    rt = Runtime.load(stack_settings.model_copy(update={
        "topic": f"it-scale-{uuid.uuid4().hex[:8]}", "partitions": 4, "shards": 2, "snapshot_interval_s": 0.5,
    }))
    rt.connect_ray()
    yield rt
    stop_shards(rt)


def claims(rt) -> Counter:
    """How many serving shard actors claim each partition right now."""
    counted: Counter = Counter()
    for name in shard_group(rt.topic).live().values():
        try:
            info = ray.get(ray.get_actor(name, namespace=NAMESPACE).owned.remote(), timeout=2)
        except Exception:  # noqa: BLE001 - starting or being removed: serves nothing
            continue
        if info["serving"]:  # neither released nor fenced
            counted.update(info["partitions"])
    return counted


async def test_rescale_2_4_2_while_commands_flow(rt) -> None:
    start_shards(rt)
    load = Load(rt.command_bus(), clients=12)
    clients = load.start()
    double: list[Counter] = []

    async def watch() -> None:  # no partition may ever be served by two actors
        while not load.stop.is_set():
            c = await asyncio.to_thread(claims, rt)
            if any(n > 1 for n in c.values()):
                double.append(c)
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    await asyncio.sleep(1.5)
    four = rt.with_settings(shards=4)
    changes = await asyncio.to_thread(rescale_shards, four)
    assert sum(c.startswith("removed") for c in changes) == 2 and sum(c.startswith("started") for c in changes) == 4
    assert await shard_group(rt.topic).owners() == {0: 0, 1: 1, 2: 2, 3: 3}
    await asyncio.sleep(1.5)
    assert await asyncio.to_thread(rescale_shards, four) == []  # idempotent
    changes = await asyncio.to_thread(rescale_shards, rt)
    assert sum(c.startswith("removed") for c in changes) == 4 and sum(c.startswith("started") for c in changes) == 2
    assert await shard_group(rt.topic).owners() == {0: 0, 1: 1, 2: 0, 3: 1}
    await asyncio.sleep(1.5)
    load.stop.set()
    await asyncio.gather(*clients)
    await watcher
    print(f"longest time without an acknowledged command: {load.longest_gap_s(0):.2f}s, retries {load.retries}")

    assert not double, f"a partition had two serving actors: {double[:3]}"
    assert sorted(shard_group(rt.topic).live()) == [0, 1]
    assert sum(load.deposited.values()) > 100
    assert_log_exact(rt, load)
