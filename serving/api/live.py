"""Live events for subscriptions: each replica tails the log (read_committed) and fans out.

One :class:`EventHub` per replica starts one tail thread per partition, from the log's end,
on the first subscription. Decoded records are handed to the event loop and put on the
queues of the subscribers that match (by aggregate id, by aggregate type, or all). A
subscriber that falls ``queue_max`` events behind is dropped with :class:`SubscriberTooSlow`
rather than letting memory grow.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from eventray.platform.errors import Retryable
from eventray.platform.eventlog.envelope import DecodedRecord

log = logging.getLogger("eventray.serving.live")


class SubscriberTooSlow(Retryable):
    """The subscriber fell too far behind the log; subscribe again."""

    code = "SUBSCRIBER_TOO_SLOW"


_END = object()


class Subscription:
    """One subscriber's queue of matching records."""

    def __init__(self, hub: EventHub, key: tuple[str | None, str | None], queue_max: int) -> None:
        self._hub = hub
        self.key = key
        self.queue: asyncio.Queue[Any] = asyncio.Queue(queue_max)

    def offer(self, record: DecodedRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self._hub.remove(self)
            self.queue.get_nowait()
            self.queue.put_nowait(SubscriberTooSlow("the subscriber fell too far behind; subscribe again"))

    async def __aiter__(self) -> AsyncIterator[DecodedRecord]:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self._hub.remove(self)


class EventHub:
    """Fans committed log records out to subscribers on this replica.

    Args:
        make_reader: ``partition -> PartitionReader``.
        partitions: the event topic's partition count.
        decode: ``(value, partition, offset) -> DecodedRecord | Undecodable``.
        queue_max: per-subscriber backlog before it is dropped.
    """

    def __init__(self, *, make_reader: Callable[[int], Any], partitions: int,
                 decode: Callable[..., Any], queue_max: int = 1000) -> None:
        self._make_reader = make_reader
        self._partitions = partitions
        self._decode = decode
        self._queue_max = queue_max
        self._subs: dict[tuple[str | None, str | None], set[Subscription]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started: asyncio.Future[None] | None = None  # the task starting the tails
        self.delivered = 0

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def subscribe(self, *, aggregate_type: str | None, aggregate_id: str | None) -> Subscription:
        """A subscription that sees every record committed after this call returns."""
        await self._ensure_started()
        sub = Subscription(self, (None if aggregate_id else aggregate_type, aggregate_id), self._queue_max)
        self._subs.setdefault(sub.key, set()).add(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]

    async def _ensure_started(self) -> None:
        # The start runs as a task of its own: a first subscriber that goes away (its client
        # disconnected) while the tails position must not leave the start pending for the next ones.
        if self._started is None:
            self._started = asyncio.ensure_future(self._start(asyncio.get_running_loop()))
        started = self._started
        try:
            await asyncio.shield(started)
        except Exception:
            if self._started is started:
                self._started = None  # the next subscriber tries again
            raise

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        positioned = [loop.create_future() for _ in range(self._partitions)]
        for p in range(self._partitions):
            t = threading.Thread(target=self._tail, args=(loop, p, positioned[p]),
                                 name=f"eventray-live-{p}", daemon=True)
            t.start()
            self._threads.append(t)
        await asyncio.gather(*positioned)

    def _tail(self, loop: asyncio.AbstractEventLoop, partition: int, positioned: asyncio.Future[None]) -> None:
        try:
            reader = self._make_reader(partition)
            start = reader.last_stable_offset()
        except Exception as e:  # noqa: BLE001 - reported to the first subscriber
            log.warning("live tail of partition %d could not start: %s", partition, e)
            loop.call_soon_threadsafe(_set_exception, positioned, e)
            return
        loop.call_soon_threadsafe(_set_result, positioned)
        decode = self._decode
        try:
            for batch in reader.tail(start, stop=self._stop):
                records = [decode(v, partition=partition, offset=o, key=k) for o, k, v in batch]
                loop.call_soon_threadsafe(self._dispatch, records)
        except Exception as e:  # noqa: BLE001 - the hub keeps serving the other partitions
            log.error("live tail of partition %d stopped: %s", partition, e)
        finally:
            reader.close()

    def _dispatch(self, records: list[Any]) -> None:
        subs = self._subs
        for rec in records:
            if not isinstance(rec, DecodedRecord):
                continue  # undecodable: the projections route it to dead letters
            env = rec.envelope
            for key in ((None, env.aggregate_id), (env.aggregate_type, None), (None, None)):
                targets = subs.get(key)
                if targets:
                    for sub in list(targets):
                        sub.offer(rec)
                        self.delivered += 1

    def close(self) -> None:
        self._stop.set()


def _set_result(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _set_exception(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
