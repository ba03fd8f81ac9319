"""The replica's live event hub: a first subscriber that goes away while the tails start does
not leave every later subscription waiting forever."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from eventray.serving.api.live import EventHub


class SlowReader:
    """A reader whose first position waits for ``go``; it tails nothing."""

    def __init__(self, go: threading.Event) -> None:
        self._go = go

    def last_stable_offset(self) -> int:
        self._go.wait(10)
        return 0

    def tail(self, start: int, *, stop: threading.Event) -> Any:
        stop.wait(10)
        return iter(())

    def close(self) -> None:
        pass


async def test_a_cancelled_first_subscriber_does_not_block_the_next() -> None:
    go = threading.Event()
    hub = EventHub(make_reader=lambda _p: SlowReader(go), partitions=2, decode=lambda *a, **k: None)
    first = asyncio.ensure_future(hub.subscribe(aggregate_type="Account", aggregate_id=None))
    await asyncio.sleep(0.05)
    first.cancel()  # its client disconnected while the tails were positioning
    await asyncio.sleep(0.05)
    go.set()
    second = await asyncio.wait_for(hub.subscribe(aggregate_type="Account", aggregate_id=None), 5)
    assert hub.subscriber_count == 1 and second.key == ("Account", None)
    hub.close()


async def test_a_failed_start_is_tried_again() -> None:
    calls = []

    class Broken(SlowReader):
        def last_stable_offset(self) -> int:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("broker away")
            return 0

    hub = EventHub(make_reader=lambda _p: Broken(threading.Event()), partitions=1, decode=lambda *a, **k: None)
    try:
        await hub.subscribe(aggregate_type=None, aggregate_id="a")
    except ConnectionError:
        pass
    else:
        raise AssertionError("the first start should have failed")
    sub = await asyncio.wait_for(hub.subscribe(aggregate_type=None, aggregate_id="a"), 5)
    assert sub.key == (None, "a") and len(calls) == 2
    hub.close()
