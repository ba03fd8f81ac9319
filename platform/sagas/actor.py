"""The Ray shells of the saga runtime: the coordinator actor and the client that reaches them.

``SagaCoordinator`` is a named, detached, restartable async actor around one
:class:`~eventray.platform.sagas.coordinator.SagaCoordinatorService` per saga-topic partition
it owns (coordinator i owns the partitions p with p % coordinators == i); the composition
root builds the services. :class:`SagaClient` routes each saga id to its partition and the
partition to its coordinator.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import ray

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.runtime.actors import ACTOR_DEFAULTS, NAMESPACE
from eventray.platform.sagas.composition import coordinator_group
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.sagas")


def coordinator_name(topic: str, saga: str, index: int) -> str:
    """The Ray actor name of coordinator ``index`` of saga ``saga`` on event topic ``topic``."""
    return coordinator_group(topic, saga).name(index)


# max_concurrency: every waiting client call (run, wait_any) holds one of the loop's slots
@ray.remote(**ACTOR_DEFAULTS, max_concurrency=10_000)  # type: ignore[call-overload]
class SagaCoordinator:
    """Coordinates the saga-topic partitions it owns, one service each. ``ready`` waits for recovery.

    Calls about one saga name its partition (the client computes it with ``owner_of``); a
    partition this actor does not own is refused with :class:`PartitionMoved` (nothing done,
    send again after looking the owner up).
    """

    def __init__(self, settings: Settings, saga_settings: Any, saga: str, partitions: list[int],
                 policy: Any = None, services: Any = None) -> None:
        from eventray.platform.composition import Runtime
        from eventray.platform.observability import logs, metrics

        logs.configure(json_lines=settings.log_json)
        self._rt = Runtime.load(settings)
        self._saga_settings, self._partitions = saga_settings, sorted(partitions)
        self._saga, self._policy, self._overrides = saga, policy, services
        self._services: dict[int, Any] = {}
        self._exporter = metrics.Exporter()
        self._released = False

    async def _svc(self, partition: int) -> Any:
        if partition not in self._partitions:
            from eventray.platform.errors import PartitionMoved

            raise PartitionMoved(f"saga coordinator owning {self._partitions} does not own saga partition "
                                 f"{partition}; look the owner up and send again", partition=partition)
        svc = self._services.get(partition)
        if svc is None:  # built inside the actor's loop: the bus binds to it
            from eventray.platform.observability.metrics import saga_export
            from eventray.platform.sagas.composition import build_coordinator

            svc = self._services[partition] = build_coordinator(
                self._rt, self._saga_settings, self._saga, partition, policy=self._policy, services=self._overrides)
            self._exporter.add(saga_export(self._saga, partition, svc.describe))
        await svc.start()
        return svc

    async def _all(self) -> list[Any]:
        return [await self._svc(p) for p in self._partitions]

    async def ready(self) -> list[dict[str, Any]]:
        return [svc.describe() for svc in await self._all()]

    def owned(self) -> dict[str, Any]:
        """The saga-topic partitions this coordinator drives."""
        return {"partitions": list(self._partitions), "serving": not self._released}

    async def request(self, partition: int, request: bytes) -> bytes:
        svc = await self._svc(partition)
        req = msgspec.msgpack.decode(request, type=svc.definition.request_type)
        return msgspec.msgpack.encode(await svc.request(req))

    async def run(self, partition: int, request: bytes, timeout_s: float = 120.0) -> bytes:
        """Start (idempotently) and wait until the saga is terminal; its final state."""
        svc = await self._svc(partition)
        req = msgspec.msgpack.decode(request, type=svc.definition.request_type)
        await svc.request(req)
        return msgspec.msgpack.encode(await svc.wait_terminal(svc.definition.saga_id(req), timeout_s))

    async def run_many(self, partition: int, requests: list[bytes], timeout_s: float = 120.0) -> list[bytes | None]:
        """:meth:`run` for a batch; ``None`` for an item that failed (send it again)."""
        svc = await self._svc(partition)
        decode = msgspec.msgpack.Decoder(svc.definition.request_type).decode

        async def one(raw: bytes) -> bytes | None:
            try:
                req = decode(raw)
                await svc.request(req)
                return msgspec.msgpack.encode(await svc.wait_terminal(svc.definition.saga_id(req), timeout_s))
            except Exception as e:  # noqa: BLE001 - reported per item
                log.info("run_many item failed: %s: %s", type(e).__name__, e)
                return None

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def request_many(self, partition: int, requests: list[bytes]) -> list[str | None]:
        """Start a batch of sagas; the saga id of each started one, ``None`` for a failure."""
        svc = await self._svc(partition)
        decode = msgspec.msgpack.Decoder(svc.definition.request_type).decode

        async def one(raw: bytes) -> str | None:
            try:
                req = decode(raw)
                await svc.request(req)
                return svc.definition.saga_id(req)
            except Exception as e:  # noqa: BLE001 - reported per item
                log.info("request_many item failed: %s: %s", type(e).__name__, e)
                return None

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def wait_any(self, partition: int, saga_ids: list[str], timeout_s: float) -> list[tuple[str, bytes]]:
        """Terminal states among ``saga_ids``, as soon as one of them is terminal."""
        done = await (await self._svc(partition)).wait_any(saga_ids, timeout_s)
        return [(sid, msgspec.msgpack.encode(state)) for sid, state in done]

    async def get(self, partition: int, saga_id: str) -> bytes | None:
        state = (await self._svc(partition)).get(saga_id)
        return None if state is None else msgspec.msgpack.encode(state)

    async def by_key(self, key: str) -> bytes:
        """``[(saga id, started at ms, state)]`` of the sagas indexed under ``key``, every owned partition."""
        return msgspec.msgpack.encode([e for svc in await self._all() for e in svc.by_key(key)])

    async def stuck(self, older_than_ms: int) -> bytes:
        """``[(saga id, started at ms, state)]`` of the sagas needing attention or older than ``older_than_ms``."""
        return msgspec.msgpack.encode([e for svc in await self._all() for e in svc.stuck(older_than_ms)])

    async def list_entries(self, status: str | None, limit: int) -> list[tuple[str, int, str, bool, bool]]:
        """``(saga id, started at ms, status, needs attention, terminal)``, every owned partition
        (at most ``limit`` each; see ``InstanceQueries.list_entries``)."""
        return [e for svc in await self._all() for e in svc.list_entries(status, limit)]

    async def history(self, partition: int, saga_id: str, limit: int) -> list[dict[str, Any]]:
        """The saga's newest ``limit`` committed transitions, oldest first."""
        return await (await self._svc(partition)).history(saga_id, limit)  # type: ignore[no-any-return]

    async def pending_deadlines(self, partition: int, saga_id: str) -> list[tuple[str, int]]:
        return (await self._svc(partition)).pending_deadlines(saga_id)  # type: ignore[no-any-return]

    async def all_states(self) -> bytes:
        return msgspec.msgpack.encode([i.state for svc in await self._all() for i in svc.instances.values()])

    async def describe(self) -> list[dict[str, Any]]:
        """One entry per owned partition (``index`` is the partition)."""
        return [svc.describe() for svc in await self._all()]

    async def release(self) -> None:
        """Stop every partition's service (its turn in flight commits or aborts)."""
        self._released = True
        for svc in self._services.values():
            await svc.stop()
        self._exporter.close()

    async def stop(self) -> None:
        await self.release()

    def pid(self) -> int:
        import os

        return os.getpid()


class SagaClient:
    """Reaches the coordinators of one saga by name; safe to use from any event loop.

    Errors from a dead coordinator come back as :class:`ServiceUnavailable` (send again: a
    request is idempotent by its saga id).
    """

    def __init__(self, rt: Any, saga_settings: Any, saga: str) -> None:
        from eventray.platform.sagas.coordinator import owner_of

        spec = rt.app.saga(saga)
        self._group = coordinator_group(rt.topic, saga)
        self._partitions = saga_settings.partitions
        self._n = max(1, min(saga_settings.coordinators, self._partitions))  # coordinator actors
        self._saga = saga
        self._owner_of = owner_of
        self._definition = spec.build()
        state_type = spec.definition.state_type
        self._state_dec = msgspec.msgpack.Decoder(state_type)
        self._list_dec = msgspec.msgpack.Decoder(list[state_type])  # type: ignore[valid-type]
        self._entries_dec = msgspec.msgpack.Decoder(list[tuple[str, int, state_type]])  # type: ignore[valid-type]
        self._handles: dict[str, Any] = {}
        self._owners: dict[int, str] | None = None
        self._lanes: dict[int, list[tuple[bytes, asyncio.Future[Any]]]] = {}
        self._in_flight: dict[int, int] = {}
        self._starting: dict[int, list[tuple[bytes, str, asyncio.Future[Any]]]] = {}
        self._waiting: dict[int, dict[str, asyncio.Future[Any]]] = {}
        self._polling: dict[int, bool] = {}

    def _fallback(self, partition: int) -> str:
        return self._group.name(partition % self._n)

    async def _owners_map(self) -> dict[int, str]:
        """``{saga partition: coordinator actor name}``, asked of the live coordinators.

        Cached until a call fails, so the client follows a change in the number of
        coordinators (as the command bus follows the shards).
        """
        if self._owners is None:
            owners = await self._group.owners()
            self._owners = {p: self._group.name(i) for p, i in owners.items()}
        return self._owners

    def _handle(self, name: str) -> Any:
        h = self._handles.get(name)
        if h is None:
            h = self._handles[name] = ray.get_actor(name, namespace=NAMESPACE)
        return h

    async def _call(self, name: str, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
        try:
            return await asyncio.wait_for(getattr(self._handle(name), method).remote(*args), timeout_s)
        except Exception as e:
            self._handles.pop(name, None)
            self._owners = None  # look the owners up again before the next call
            from eventray.platform.errors import EventrayError

            cause = getattr(e, "cause", None)
            if isinstance(cause, EventrayError):
                raise cause from None
            if isinstance(e, EventrayError):
                raise
            raise ServiceUnavailable(f"saga coordinator {name} unavailable ({type(e).__name__}); retry") from e

    def owner(self, saga_id: str) -> int:
        """The saga-topic partition of ``saga_id``."""
        return self._owner_of(saga_id, self._partitions)

    async def _on(self, partition: int, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
        """Call ``method(partition, *args)`` on the coordinator owning ``partition``."""
        name = (await self._owners_map()).get(partition) or self._fallback(partition)
        return await self._call(name, method, partition, *args, timeout_s=timeout_s)

    async def _each(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every coordinator (each answers for the partitions it owns)."""
        owners = await self._owners_map()
        if set(owners) == set(range(self._partitions)):
            names = sorted(set(owners.values()))
        else:  # some partition has no live owner right now: ask by the configured count (fails, retry)
            names = [self._fallback(i) for i in range(self._n)]
        return list(await asyncio.gather(*(self._call(n, method, *args) for n in names)))

    async def request(self, request: Any) -> Any:
        """Start a saga (idempotent by its id); its state once the start is committed."""
        sid = self._definition.saga_id(request)
        return self._state_dec.decode(await self._on(self.owner(sid), "request", msgspec.msgpack.encode(request)))

    async def run(self, request: Any, timeout_s: float = 120.0) -> Any:
        """Start a saga and wait for its terminal state."""
        sid = self._definition.saga_id(request)
        return self._state_dec.decode(await self._on(self.owner(sid), "run", msgspec.msgpack.encode(request),
                                                     timeout_s, timeout_s=timeout_s + 10))

    async def run_batched(self, request: Any, timeout_s: float = 120.0) -> Any:
        """:meth:`run`, micro-batched: concurrent calls for one coordinator share one Ray call
        (a Ray call costs about as much CPU as a hundred transfers' coordination)."""
        sid = self._definition.saga_id(request)
        index = self.owner(sid)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lane = self._lanes.setdefault(index, [])
        lane.append((msgspec.msgpack.encode(request), fut))
        if len(lane) == 1 and self._in_flight.get(index, 0) < 4:
            asyncio.get_running_loop().call_soon(self._flush, index, timeout_s)
        return await fut

    def _flush(self, index: int, timeout_s: float) -> None:
        lane = self._lanes.get(index)
        if not lane or self._in_flight.get(index, 0) >= 4:
            return
        self._lanes[index] = []
        self._in_flight[index] = self._in_flight.get(index, 0) + 1
        asyncio.ensure_future(self._run_batch(index, lane, timeout_s))

    async def _run_batch(self, index: int, batch: list[tuple[bytes, asyncio.Future[Any]]], timeout_s: float) -> None:
        try:
            results = await self._on(index, "run_many", [r for r, _ in batch], timeout_s, timeout_s=timeout_s + 10)
        except Exception as e:  # noqa: BLE001 - every item fails alike
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
        else:
            for (_, fut), raw in zip(batch, results):
                if fut.done():
                    continue
                if raw is None:
                    fut.set_exception(ServiceUnavailable("the saga did not finish in time; send it again"))
                else:
                    fut.set_result(self._state_dec.decode(raw))
        finally:
            self._in_flight[index] -= 1
            if self._lanes.get(index):
                self._flush(index, timeout_s)

    async def run_streamed(self, request: Any, timeout_s: float = 120.0) -> Any:
        """:meth:`run`, with starts batched per coordinator and completions streamed back: one
        long-poll per coordinator returns every saga that ended, so no transfer waits for a
        slower one (unlike :meth:`run_batched`)."""
        sid = self._definition.saga_id(request)
        index = self.owner(sid)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        starts = self._starting.setdefault(index, [])
        starts.append((msgspec.msgpack.encode(request), sid, fut))
        if len(starts) == 1:
            loop.call_soon(lambda: asyncio.ensure_future(self._start_batch(index)))
        return await asyncio.wait_for(fut, timeout_s)

    async def _start_batch(self, index: int) -> None:
        batch, self._starting[index] = self._starting.get(index, []), []
        if not batch:
            return
        try:
            ids = await self._on(index, "request_many", [r for r, _, _ in batch])
        except Exception as e:  # noqa: BLE001 - every item fails alike
            ids = [None] * len(batch)
            err: Exception = e
        else:
            err = ServiceUnavailable("the saga could not be started; send it again")
        waiting = self._waiting.setdefault(index, {})
        for (_, sid, fut), got in zip(batch, ids):
            if got is None:
                if not fut.done():
                    fut.set_exception(err)
            else:
                waiting[sid] = fut
        if waiting and not self._polling.get(index):
            self._polling[index] = True
            asyncio.ensure_future(self._poll(index))

    async def _poll(self, index: int) -> None:
        waiting = self._waiting[index]
        try:
            while waiting:
                for sid in [s for s, f in waiting.items() if f.done()]:
                    del waiting[sid]
                if not waiting:
                    break
                try:
                    done = await self._on(index, "wait_any", list(waiting), 0.5)
                except Exception as e:  # noqa: BLE001 - the coordinator restarts: callers resend
                    for f in waiting.values():
                        if not f.done():
                            f.set_exception(e)
                    waiting.clear()
                    break
                for sid, raw in done:
                    waiter = waiting.pop(sid) if sid in waiting else None
                    if waiter is not None and not waiter.done():
                        waiter.set_result(self._state_dec.decode(raw))
        finally:
            self._polling[index] = False

    async def get(self, saga_id: str) -> Any | None:
        raw = await self._on(self.owner(saga_id), "get", saga_id)
        return None if raw is None else self._state_dec.decode(raw)

    async def by_key(self, key: str) -> list[Any]:
        """The states of the sagas indexed under ``key`` (the definition's ``index_keys``), newest first."""
        entries = [e for raw in await self._each("by_key", key) for e in self._entries_dec.decode(raw)]
        return [state for _, _, state in sorted(entries, key=lambda e: e[1], reverse=True)]

    async def stuck_entries(self, older_than_ms: int = 60_000) -> list[tuple[str, int, Any]]:
        """``(saga id, started at ms, state)`` of the sagas needing attention (the definition's
        ``needs_attention``), and of live ones older than ``older_than_ms``, oldest first."""
        entries = [e for raw in await self._each("stuck", older_than_ms) for e in self._entries_dec.decode(raw)]
        return sorted(entries, key=lambda e: e[1])

    async def stuck(self, older_than_ms: int = 60_000) -> list[Any]:
        """The states of :meth:`stuck_entries`."""
        return [state for _, _, state in await self.stuck_entries(older_than_ms)]

    async def list_entries(self, status: str | None = None, limit: int = 100) -> list[tuple[str, int, str, bool, bool]]:
        """``(saga id, started at ms, status, needs attention, terminal)`` of at most ``limit``
        sagas (of ``status`` when given): needing attention first, then live ones oldest first,
        then ended ones newest first."""
        from eventray.platform.sagas.queries import list_order

        entries = [tuple(e) for part in await self._each("list_entries", status, limit) for e in part]
        return sorted(entries, key=list_order)[:max(0, limit)]  # type: ignore[arg-type]

    async def history(self, saga_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The saga's newest ``limit`` committed transitions (``seq``, ``at_ms``, ``status``,
        ``why``, ``trigger``), oldest first, from its saga-topic partition."""
        return await self._on(self.owner(saga_id), "history", saga_id, limit)  # type: ignore[no-any-return]

    async def pending_deadlines(self, saga_id: str) -> list[tuple[str, int]]:
        """``(deadline name, at ms)`` armed for the saga on its coordinator, soonest first."""
        return [tuple(d) for d in await self._on(self.owner(saga_id), "pending_deadlines", saga_id)]  # type: ignore[misc]

    def status(self, state: Any) -> str:
        """The definition's status of ``state``."""
        return self._definition.status(state)

    def needs_attention(self, state: Any) -> bool:
        """Whether the definition says a person must look at ``state``."""
        return bool(self._definition.needs_attention(state))

    async def all_states(self) -> list[Any]:
        parts = await self._each("all_states")
        return [s for raw in parts for s in self._list_dec.decode(raw)]

    async def describe(self) -> list[dict[str, Any]]:
        """One entry per saga-topic partition, from the coordinators that own them."""
        parts = await self._each("describe")
        return sorted((d for part in parts for d in part), key=lambda d: d["index"])
