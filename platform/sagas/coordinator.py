"""The saga coordinator: drives saga definitions from the event log, exactly once per transition.

One coordinator owns one partition of the saga topic (``index``) and the sagas whose id hashes
there (:func:`owner_of`). It reads every partition of the event topic (read_committed) and keeps
the events its sagas react to. Each turn of its loop:

1. polls the event topic and takes the queued signals (start requests, refused commands,
   scorer answers, deadlines); an event the definition's ``start_request`` maps to a request
   starts that saga, unless it exists;
2. runs the pure definition on each signal, in memory;
3. writes one saga record per transition to its saga-topic partition, and the consumed
   event-topic offsets (``send_offsets_to_transaction`` with the consumer's group metadata),
   in ONE Kafka transaction: a transition and the input that caused it commit together;
4. only then acknowledges start requests and carries out the effects (commands through the
   command bus, asks to the scorer, deadlines in a timer heap).

Any failed commit (aborted, unknown outcome, broker down) is handled like a crash: the
producer is re-created (``init_transactions`` fences a zombie and settles the open
transaction; kafka-python 3.0 has no KIP-890, so the producer must not go on after an
indefinite error), the instances are rebuilt from the saga topic, the consumer goes back to the
group's committed offsets, and each live saga's pending effects are re-issued. Effects may so
run twice: commands are idempotent (deterministic ``command_id`` and the account's transfer
memory), asks are side-effect free, and a stale reply is ignored by the definition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import msgspec

from eventray.platform.errors import EventrayError, Fenced, InvalidCommand, ServiceUnavailable
from eventray.platform.sagas.definition import Ask, DeadlinePassed, LogEvent, SagaDefinition, Signal
from eventray.platform.sagas.bookkeeping import (
    CoordinatorConfig, Instance, Pending, Start, Stats, event_type_of, load_instances, now_ms, owner_of,
)
from eventray.platform.sagas.effects import EffectRunner
from eventray.platform.sagas.queries import InstanceQueries
from eventray.platform.sagas.records import encode_record

log = logging.getLogger("eventray.sagas")

__all__ = ["CoordinatorConfig", "SagaCoordinatorService", "owner_of"]


class SagaCoordinatorService(InstanceQueries, EffectRunner):
    """Hosts one saga definition's instances for saga-topic partition ``index``.

    Args:
        index: this coordinator's number; its saga-topic partition.
        coordinators: how many coordinators share the sagas (by :func:`owner_of`).
        definition: the pure saga definition.
        event_topic: the event topic (read, all partitions).
        saga_topic: the saga topic (written, partition ``index``).
        make_writer: builds the transactional writer of saga-topic partition ``index``.
        make_consumer: builds the event-topic consumer (``EventConsumer``).
        read_saga_log: ``() -> iterable of record values`` of partition ``index``, read_committed.
        decode_events: ``(records, partition) -> decoded records`` (the event codec).
        send_command: ``async (command) -> Outcome`` (the command bus).
        services: named services for :class:`Ask` effects: ``async (requests) -> answers``.
        config: tuning.
        clock: epoch-ms clock (tests).
    """

    def __init__(
        self,
        *,
        index: int,
        coordinators: int,
        definition: SagaDefinition[Any],
        event_topic: str,
        saga_topic: str,
        make_writer: Callable[[], Any],
        make_consumer: Callable[[], Any],
        read_saga_log: Callable[[], Any],
        decode_events: Callable[[list[tuple[int, bytes | None, bytes]], int], list[Any]],
        send_command: Callable[[Any], Any],
        services: dict[str, Callable[[list[Any]], Any]],
        config: CoordinatorConfig | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.index = index
        self.coordinators = coordinators
        self.definition = definition
        self.event_topic = event_topic
        self.saga_topic = saga_topic
        self._make_writer = make_writer
        self._make_consumer = make_consumer
        self._read_saga_log = read_saga_log
        self._decode_events = decode_events
        self._send_command = send_command
        self._services = services
        self.config = config or CoordinatorConfig()
        self._clock = clock
        self._event_types = frozenset(t.__name__ for t in definition.event_types)
        self._state_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(definition.state_type)
        self.instances: dict[str, Instance] = {}
        self._by_key: dict[str, list[str]] = defaultdict(list)
        self._writer: Any = None
        self._consumer: Any = None
        self._inbox: list[tuple[str, Signal]] = []
        self._starts: list[Start] = []
        self._wake = asyncio.Event()
        self._idle_ms = 0  # the current wait of an idle turn (see _turn)
        self._deadlines: list[tuple[int, int, str, str]] = []
        self._armed: dict[tuple[str, str], int] = {}
        self._deadline_counter = 0
        self._asks: dict[str, list[tuple[str, Ask]]] = defaultdict(list)
        self._waiters: dict[str, list[asyncio.Future[Any]]] = defaultdict(list)
        self._positions: dict[int, int] = {}
        self._committed_positions: dict[int, int] = {}
        self._last_offsets_commit = 0.0
        self._ready: asyncio.Future[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._generation = 0
        self.fenced: Fenced | None = None
        self.stats = Stats()
        self.recovery_s = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Recover, then run the loop. Safe to await many times."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            try:
                await self._recover()
            except BaseException as exc:
                self._ready.set_exception(exc)
                self._ready.exception()  # mark retrieved
                self._ready = None
                raise
            self._loop_task = asyncio.create_task(self._run(), name=f"saga-coordinator-{self.index}")
            self._ready.set_result(None)
        await asyncio.shield(self._ready)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await self._close_clients()

    async def _close_clients(self) -> None:
        writer, self._writer = self._writer, None
        consumer, self._consumer = self._consumer, None
        if writer is not None:
            await asyncio.to_thread(writer.close)
        if consumer is not None:
            await asyncio.to_thread(consumer.close)

    async def _recover(self) -> None:
        """Fence older incarnations, rebuild instances from the saga topic, re-arm deadlines."""
        t0 = time.perf_counter()
        self._generation += 1
        await self._close_clients()
        writer = self._make_writer()
        await asyncio.to_thread(writer.init)  # fences a zombie, settles its open transaction
        self._writer = writer
        instances = await asyncio.to_thread(load_instances, self._read_saga_log(), self.definition,
                                            self._state_decoder)
        consumer = self._make_consumer()
        self._consumer = consumer
        committed = await asyncio.to_thread(consumer.committed)
        missing = [p for p, o in committed.items() if o is None]
        if missing:
            # A new coordinator group: no saga of this group existed before its first commit, so
            # the events before now are not ours. Start at the end, and make that durable.
            ends = await asyncio.to_thread(consumer.end_offsets)
            for p in missing:
                committed[p] = ends[p]
            await asyncio.to_thread(self._commit, [], committed)
        await asyncio.to_thread(consumer.seek_all, committed)
        self._positions = dict(committed)
        self._committed_positions = dict(committed)
        self._last_offsets_commit = time.monotonic()
        self.instances = instances
        self._by_key = defaultdict(list)
        self._deadlines.clear()
        self._armed.clear()
        self._asks.clear()
        self._inbox.clear()
        self.stats.by_status = defaultdict(int)
        now = self._clock()
        live = 0
        for saga_id, inst in instances.items():
            self.stats.by_status[self.definition.status(inst.state)] += 1
            for key in self.definition.index_keys(inst.state):
                self._by_key[key].append(saga_id)
            if not inst.terminal:
                live += 1
                self._execute(saga_id, self.definition.resume(inst.state, now))
        self.recovery_s = time.perf_counter() - t0
        log.info("saga coordinator %d recovered in %.2fs: %d sagas, %d live, offsets %s",
                 self.index, self.recovery_s, len(instances), live, committed)

    # ------------------------------------------------------------------ API

    async def request(self, request: Any) -> Any:
        """Start the saga of ``request`` (idempotent by its saga id); return its state once the
        start is committed. A saga that exists already returns its current state.

        Raises:
            InvalidCommand: the request is not valid for the saga.
            ServiceUnavailable: the start could not be committed; send it again.
        """
        await self.start()
        saga_id = self.definition.saga_id(request)
        if owner_of(saga_id, self.coordinators) != self.index:
            raise ServiceUnavailable(f"saga {saga_id!r} belongs to coordinator "
                                     f"{owner_of(saga_id, self.coordinators)}, not {self.index}")
        inst = self.instances.get(saga_id)
        if inst is not None:
            return inst.state
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._starts.append(Start(request, fut))
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.config.start_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceUnavailable(f"the start of saga {saga_id!r} was not committed within "
                                     f"{self.config.start_timeout_s:.0f}s; send it again") from None

    def describe(self) -> dict[str, Any]:
        s = self.stats
        live = sum(1 for i in self.instances.values() if not i.terminal)
        return {"index": self.index, "sagas": len(self.instances), "live": live,
                "by_status": dict(s.by_status), "transitions": s.transitions, "transactions": s.transactions,
                "commit_failures": s.commit_failures, "resyncs": s.resyncs, "events_seen": s.events_seen,
                "commands_sent": s.commands_sent, "asks": s.asks, "deadlines_fired": s.deadlines_fired,
                "recovery_s": self.recovery_s, "fenced": self.fenced is not None, "positions": self._positions}

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._turn()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Fenced as exc:
                self.fenced = exc
                log.error("saga coordinator %d fenced by a newer incarnation; it stops", self.index)
                self._fail_starts(ServiceUnavailable(f"coordinator fenced: {exc}"))
                return
            except Exception as exc:  # noqa: BLE001 - every failure: resync as after a crash
                self.stats.commit_failures += 1
                log.warning("saga coordinator %d: %s: %s; re-creating the producer and resyncing",
                            self.index, type(exc).__name__, exc)
                self._fail_starts(exc if isinstance(exc, EventrayError) and exc.code in ("COMMIT_FAILED",
                                  "COMMIT_UNKNOWN", "UNAVAILABLE") else ServiceUnavailable(str(exc)))
                while True:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.config.resync_backoff_max_s)
                    try:
                        self.stats.resyncs += 1
                        await self._recover()
                        break
                    except Fenced as f:
                        self.fenced = f
                        return
                    except Exception as e:  # noqa: BLE001 - the broker may be down: keep trying
                        log.warning("saga coordinator %d: resync failed: %s: %s", self.index, type(e).__name__, e)

    async def _turn(self) -> None:
        consumer = self._consumer
        # an idle coordinator waits longer each empty turn (poll_ms doubling up to idle_poll_ms):
        # new log records end a wait at once; a queued signal (a reply, a start, a deadline) waits
        # at most the current wait, and any work brings it back to poll_ms
        config = self.config
        timeout = 0 if (self._inbox or self._starts) else max(config.poll_ms, self._idle_ms)
        polled = await asyncio.to_thread(consumer.poll, timeout, config.max_batch)
        if not polled and not self._inbox and not self._starts:
            self._idle_ms = min(config.idle_poll_ms, max(1, self._idle_ms * 2, config.poll_ms))
            if self._positions != self._committed_positions and \
                    time.monotonic() - self._last_offsets_commit >= self.config.offsets_every_s:
                await asyncio.to_thread(self._commit, [], dict(self._positions))
                self._committed_positions = dict(self._positions)
                self._last_offsets_commit = time.monotonic()
            return
        self._wake.clear()
        self._idle_ms = 0
        definition = self.definition
        now = self._clock()
        pending: dict[str, Pending] = {}
        order: list[Pending] = []
        positions = dict(self._positions)

        def current(saga_id: str) -> tuple[Any, int] | None:
            p = pending.get(saga_id)
            if p is not None:
                return p.state, p.seq
            inst = self.instances.get(saga_id)
            if inst is None or inst.terminal:
                return None
            return inst.state, inst.seq

        def apply(saga_id: str, signal: Signal, trigger: str | None) -> None:
            cur = current(saga_id)
            if cur is None:
                return
            decision = definition.react(cur[0], signal, now)
            if decision is None:
                return
            p = Pending(saga_id, decision.state, cur[1] + 1, decision.why, trigger, decision.effects)
            # several transitions of one saga in a turn: only the latest state's effects are due
            pending[saga_id] = p
            order.append(p)

        def start_from_event(request: Any, trigger: str) -> None:
            saga_id = definition.saga_id(request)
            if owner_of(saga_id, self.coordinators) != self.index or saga_id in pending or saga_id in self.instances:
                return  # another coordinator's, or started already (the event read again)
            try:
                decision = definition.start(request, now)
            except InvalidCommand as exc:
                log.warning("saga %s: the event at %s does not start saga %s: %s", definition.name, trigger, saga_id,
                            exc)
                return
            p = Pending(saga_id, decision.state, 1, decision.why, trigger, decision.effects)
            pending[saga_id] = p
            order.append(p)

        # 1. log events, in log order per partition (an event may start a saga: start_request)
        for partition, records in (polled or {}).items():
            if not records:
                continue
            positions[partition] = records[-1][0] + 1
            wanted = [r for r in records if event_type_of(r[2]) in self._event_types]
            if not wanted:
                continue
            for rec in self._decode_events(wanted, partition):
                event = getattr(rec, "event", None)
                if event is None:
                    continue
                envelope = rec.envelope
                request = definition.start_request(envelope.aggregate_id, event,
                                                   correlation_id=envelope.correlation_id, subject=envelope.subject)
                if request is not None:
                    start_from_event(request, f"{partition}:{rec.offset}")
                    continue
                saga_id = definition.correlate_record(rec.envelope.aggregate_id, event)
                if saga_id is None or owner_of(saga_id, self.coordinators) != self.index:
                    continue
                self.stats.events_seen += 1
                apply(saga_id, LogEvent(aggregate_id=rec.envelope.aggregate_id, event=event, partition=partition,
                                        offset=rec.offset), f"{partition}:{rec.offset}")
        # 2. queued signals
        inbox, self._inbox = self._inbox, []
        for saga_id, signal in inbox:
            if isinstance(signal, DeadlinePassed):
                self.stats.deadlines_fired += 1
            apply(saga_id, signal, None)
        # 3. starts
        starts, self._starts = self._starts, []
        accepted: list[tuple[Start, str]] = []
        for start in starts:
            saga_id = definition.saga_id(start.request)
            if saga_id in pending or saga_id in self.instances:
                accepted.append((start, saga_id))
                continue
            try:
                decision = definition.start(start.request, now)
            except InvalidCommand as exc:
                start.future.set_exception(exc)
                continue
            p = Pending(saga_id, decision.state, 1, decision.why, None, decision.effects)
            pending[saga_id] = p
            order.append(p)
            accepted.append((start, saga_id))
        # 4. one transaction: every transition's record and the consumed offsets
        records = [(p.saga_id.encode(), encode_record(saga_id=p.saga_id, saga_type=definition.name, seq=p.seq,
                                                      at_ms=now, status=definition.status(p.state), why=p.why,
                                                      state=p.state, trigger=p.trigger)) for p in order]
        offsets = positions if positions != self._committed_positions else {}
        if records or (offsets and time.monotonic() - self._last_offsets_commit >= self.config.offsets_every_s):
            await asyncio.to_thread(self._commit, records, offsets)
            self._committed_positions = dict(positions)
            self._last_offsets_commit = time.monotonic()
        self._positions = positions
        # 5. committed: make it permanent, answer, act
        self.stats.transitions += len(order)
        by_status = self.stats.by_status
        for p in pending.values():
            old = self.instances.get(p.saga_id)
            if old is None:
                self.stats.started += 1
                for key in definition.index_keys(p.state):
                    self._by_key[key].append(p.saga_id)
            else:
                by_status[definition.status(old.state)] -= 1
            terminal = definition.is_terminal(p.state)
            self.instances[p.saga_id] = Instance(p.state, p.seq, terminal, now if old is None else old.started_at_ms)
            by_status[definition.status(p.state)] += 1
            if terminal:
                for fut in self._waiters.pop(p.saga_id, ()):
                    if not fut.done():
                        fut.set_result(p.state)
            else:
                self._execute(p.saga_id, p.effects)
        for start, saga_id in accepted:
            if not start.future.done():
                start.future.set_result(self.instances[saga_id].state)
        self._flush_asks()

    def _commit(self, records: list[tuple[bytes, bytes]], offsets: dict[int, int]) -> None:
        consumed = {(self.event_topic, p): o for p, o in offsets.items()}
        self._writer.append_batch(records, consumed_offsets=consumed or None,
                                  group_metadata=self._consumer.group_metadata() if consumed else None)
        self.stats.transactions += 1

    def _fail_starts(self, exc: Exception) -> None:
        starts, self._starts = self._starts, []
        for s in starts:
            if not s.future.done():
                s.future.set_exception(exc)
