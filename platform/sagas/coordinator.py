"""The saga coordinator: drives saga definitions from the event log, exactly once per transition.

One coordinator owns one partition of the saga topic (``index``) and the sagas whose id hashes
there (:func:`owner_of`). It reads every partition of the event topic (read_committed) and keeps
the events its sagas react to. Each turn of its loop:

1. polls the event topic and takes the queued signals (start requests, refused commands,
   scorer answers, deadlines);
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
import heapq
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from eventray.platform.errors import EventrayError, Fenced, InvalidCommand, ServiceUnavailable
from eventray.platform.sagas.definition import (
    ArmDeadline, Ask, AskFailed, CommandFailed, DeadlinePassed, Effect, LogEvent, Replied, SagaDefinition,
    SendCommand, Signal,
)
from eventray.platform.sagas.records import decode_record, encode_record

log = logging.getLogger("eventray.sagas")

__all__ = ["CoordinatorConfig", "SagaCoordinatorService", "owner_of"]


class _Peek(msgspec.Struct, array_like=True):
    """The head of an event envelope (extra trailing elements are ignored): enough to filter."""

    event_id: str
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str


_peek = msgspec.msgpack.Decoder(_Peek).decode


def _event_type(value: bytes) -> str | None:
    try:
        return _peek(value).event_type
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None  # not an envelope: the full decode reports it where it matters


def owner_of(saga_id: str, coordinators: int) -> int:
    """The coordinator (and saga-topic partition) of a saga id."""
    return zlib.crc32(saga_id.encode()) % coordinators


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class CoordinatorConfig:
    poll_ms: int = 10
    offsets_every_s: float = 1.0
    max_batch: int = 5_000
    resync_backoff_max_s: float = 2.0
    start_timeout_s: float = 20.0


@dataclass
class _Instance:
    state: Any
    seq: int
    terminal: bool


@dataclass
class _Start:
    request: Any
    future: asyncio.Future[Any]


@dataclass
class _Pending:
    """A transition decided this turn, waiting for its commit."""

    saga_id: str
    state: Any
    seq: int
    why: str
    trigger: str | None
    effects: tuple[Effect, ...]


@dataclass
class _Stats:
    transitions: int = 0
    transactions: int = 0
    commit_failures: int = 0
    resyncs: int = 0
    events_seen: int = 0
    started: int = 0
    commands_sent: int = 0
    asks: int = 0
    deadlines_fired: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class SagaCoordinatorService:
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
        self.instances: dict[str, _Instance] = {}
        self._by_account: dict[str, list[str]] = defaultdict(list)
        self._writer: Any = None
        self._consumer: Any = None
        self._inbox: list[tuple[str, Signal]] = []
        self._starts: list[_Start] = []
        self._wake = asyncio.Event()
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
        self.stats = _Stats()
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
        instances = await asyncio.to_thread(self._load_instances)
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
        self._by_account = defaultdict(list)
        self._deadlines.clear()
        self._armed.clear()
        self._asks.clear()
        self._inbox.clear()
        self.stats.by_status = defaultdict(int)
        now = self._clock()
        live = 0
        for saga_id, inst in instances.items():
            self.stats.by_status[self.definition.status(inst.state)] += 1
            for account in self.definition.accounts(inst.state):
                self._by_account[account].append(saga_id)
            if not inst.terminal:
                live += 1
                self._execute(saga_id, self.definition.resume(inst.state, now))
        self.recovery_s = time.perf_counter() - t0
        log.info("saga coordinator %d recovered in %.2fs: %d sagas, %d live, offsets %s",
                 self.index, self.recovery_s, len(instances), live, committed)

    def _load_instances(self) -> dict[str, _Instance]:
        instances: dict[str, _Instance] = {}
        decode_state = self._state_decoder.decode
        is_terminal = self.definition.is_terminal
        for value in self._read_saga_log():
            rec = decode_record(value)
            if rec.saga_type != self.definition.name:
                continue
            state = decode_state(rec.state)
            instances[rec.saga_id] = _Instance(state=state, seq=rec.seq, terminal=is_terminal(state))
        return instances

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
        self._starts.append(_Start(request, fut))
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.config.start_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceUnavailable(f"the start of saga {saga_id!r} was not committed within "
                                     f"{self.config.start_timeout_s:.0f}s; send it again") from None

    async def wait_terminal(self, saga_id: str, timeout_s: float | None = None) -> Any | None:
        """The saga's state once it is terminal (``None`` if unknown)."""
        await self.start()
        inst = self.instances.get(saga_id)
        if inst is None:
            return None
        if inst.terminal:
            return inst.state
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[saga_id].append(fut)
        return await asyncio.wait_for(fut, timeout_s)

    async def wait_any(self, saga_ids: list[str], timeout_s: float) -> list[tuple[str, Any]]:
        """The terminal states among ``saga_ids``, once at least one is terminal (or the timeout
        passes); unknown ids are left out."""
        await self.start()
        futures = []
        for sid in saga_ids:
            inst = self.instances.get(sid)
            if inst is None:
                continue
            if inst.terminal:
                return [(s, self.instances[s].state) for s in saga_ids
                        if s in self.instances and self.instances[s].terminal]
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters[sid].append(fut)
            futures.append(fut)
        if futures:
            await asyncio.wait(futures, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            for fut in futures:
                fut.cancel()
            for sid in saga_ids:  # drop this call's waiters
                left = [f for f in self._waiters.get(sid, ()) if not f.done()]
                if left:
                    self._waiters[sid] = left
                else:
                    self._waiters.pop(sid, None)
        return [(s, self.instances[s].state) for s in saga_ids if s in self.instances and self.instances[s].terminal]

    def get(self, saga_id: str) -> Any | None:
        inst = self.instances.get(saga_id)
        return None if inst is None else inst.state

    def by_account(self, account_id: str) -> list[Any]:
        return [self.instances[s].state for s in self._by_account.get(account_id, ()) if s in self.instances]

    def stuck(self, older_than_ms: int) -> list[Any]:
        """Sagas needing attention, and live ones older than ``older_than_ms``."""
        now = self._clock()
        out = []
        for inst in self.instances.values():
            status = self.definition.status(inst.state)
            if status == "failed_needs_attention" or (
                    not inst.terminal and now - getattr(inst.state, "requested_at_ms", now) >= older_than_ms):
                out.append(inst.state)
        return out

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
        timeout = 0 if (self._inbox or self._starts) else self.config.poll_ms
        polled = await asyncio.to_thread(consumer.poll, timeout, self.config.max_batch)
        if not polled and not self._inbox and not self._starts:
            if self._positions != self._committed_positions and \
                    time.monotonic() - self._last_offsets_commit >= self.config.offsets_every_s:
                await asyncio.to_thread(self._commit, [], dict(self._positions))
                self._committed_positions = dict(self._positions)
                self._last_offsets_commit = time.monotonic()
            return
        self._wake.clear()
        definition = self.definition
        now = self._clock()
        pending: dict[str, _Pending] = {}
        order: list[_Pending] = []
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
            p = _Pending(saga_id, decision.state, cur[1] + 1, decision.why, trigger, decision.effects)
            # several transitions of one saga in a turn: only the latest state's effects are due
            pending[saga_id] = p
            order.append(p)

        # 1. log events, in log order per partition
        for partition, records in (polled or {}).items():
            if not records:
                continue
            positions[partition] = records[-1][0] + 1
            wanted = [r for r in records if _event_type(r[2]) in self._event_types]
            if not wanted:
                continue
            for rec in self._decode_events(wanted, partition):
                event = getattr(rec, "event", None)
                if event is None:
                    continue
                saga_id = definition.correlate(event)
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
        accepted: list[tuple[_Start, str]] = []
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
            p = _Pending(saga_id, decision.state, 1, decision.why, None, decision.effects)
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
                for account in definition.accounts(p.state):
                    self._by_account[account].append(p.saga_id)
            else:
                by_status[definition.status(old.state)] -= 1
            terminal = definition.is_terminal(p.state)
            self.instances[p.saga_id] = _Instance(p.state, p.seq, terminal)
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

    # ------------------------------------------------------------------ effects

    def _execute(self, saga_id: str, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            if isinstance(effect, SendCommand):
                self._spawn(self._send(saga_id, effect, self._generation))
            elif isinstance(effect, Ask):
                if effect.delay_ms:
                    self._spawn(self._ask_later(saga_id, effect, self._generation))
                else:
                    self._asks[effect.service].append((saga_id, effect))
            elif isinstance(effect, ArmDeadline):
                self._arm(saga_id, effect.name, effect.at_ms)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _signal(self, saga_id: str, signal: Signal, generation: int) -> None:
        if generation == self._generation:  # a reply from before a resync is dropped: resume re-asks
            self._inbox.append((saga_id, signal))
            self._wake.set()

    async def _send(self, saga_id: str, effect: SendCommand, generation: int) -> None:
        if effect.delay_ms:
            await asyncio.sleep(effect.delay_ms / 1000)
        self.stats.commands_sent += 1
        try:
            outcome = await self._send_command(effect.command)
        except Exception as exc:  # noqa: BLE001 - the bus should not raise; treat as retryable
            log.warning("saga %s: sending %s raised %s: %s", saga_id, effect.step, type(exc).__name__, exc)
            self._signal(saga_id, CommandFailed(step=effect.step, attempt=effect.attempt, error_code="UNAVAILABLE",
                                                error_type=type(exc).__name__, message=str(exc), retryable=True),
                         generation)
            return
        if outcome.error_code is not None:
            self._signal(saga_id, CommandFailed(
                step=effect.step, attempt=effect.attempt, error_code=outcome.error_code,
                error_type=outcome.error_type or "", message=outcome.error_message or "", retryable=outcome.retryable,
            ), generation)

    async def _ask_later(self, saga_id: str, effect: Ask, generation: int) -> None:
        await asyncio.sleep(effect.delay_ms / 1000)
        if generation == self._generation:
            self._asks[effect.service].append((saga_id, effect))
            self._flush_asks()

    def _flush_asks(self) -> None:
        for service, asks in list(self._asks.items()):
            if asks:
                self._asks[service] = []
                self.stats.asks += len(asks)
                self._spawn(self._ask(service, asks, self._generation))

    async def _ask(self, service: str, asks: list[tuple[str, Ask]], generation: int) -> None:
        call = self._services.get(service)
        try:
            if call is None:
                raise ServiceUnavailable(f"no service {service!r} is configured for saga {self.definition.name}")
            answers = await call([a.request for _, a in asks])
        except Exception as exc:  # noqa: BLE001 - every ask of the batch fails, retryably
            log.warning("saga service %s failed for %d asks: %s: %s", service, len(asks), type(exc).__name__, exc)
            for saga_id, a in asks:
                self._signal(saga_id, AskFailed(step=a.step, attempt=a.attempt, message=f"{type(exc).__name__}: {exc}"),
                             generation)
            return
        for (saga_id, a), value in zip(asks, answers):
            self._signal(saga_id, Replied(step=a.step, attempt=a.attempt, value=value), generation)

    # ------------------------------------------------------------------ deadlines

    def _arm(self, saga_id: str, name: str, at_ms: int) -> None:
        key = (saga_id, name)
        if self._armed.get(key) == at_ms:
            return
        self._armed[key] = at_ms
        self._deadline_counter += 1
        first = self._deadlines[0][0] if self._deadlines else None
        heapq.heappush(self._deadlines, (at_ms, self._deadline_counter, saga_id, name))
        if first is None:
            self._spawn(self._timer(self._generation))
        elif at_ms < first:
            self._spawn(self._timer(self._generation))

    async def _timer(self, generation: int) -> None:
        while self._deadlines and generation == self._generation:
            at_ms, _, saga_id, name = self._deadlines[0]
            delay = (at_ms - self._clock()) / 1000
            if delay > 0:
                await asyncio.sleep(min(delay, 0.5))
                continue
            heapq.heappop(self._deadlines)
            if self._armed.get((saga_id, name)) != at_ms:
                continue  # moved or superseded
            del self._armed[(saga_id, name)]
            inst = self.instances.get(saga_id)
            if inst is not None and not inst.terminal:
                self._signal(saga_id, DeadlinePassed(name=name), generation)
