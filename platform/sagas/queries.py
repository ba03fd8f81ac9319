"""What a saga coordinator answers about its instances: waits, lookups and listings.

A mixin of :class:`~.coordinator.SagaCoordinatorService`, which owns the instances (rebuilt
from the saga topic on recovery, updated after every committed transition).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from eventray.platform.sagas.definition import SagaDefinition

__all__ = ["InstanceQueries", "list_order"]


class InstanceQueries:
    """Reads over the coordinator's committed saga instances."""

    definition: SagaDefinition[Any]
    instances: dict[str, Any]
    _waiters: dict[str, list[asyncio.Future[Any]]]
    _by_key: dict[str, list[str]]
    _clock: Callable[[], int]
    _armed: dict[tuple[str, str], int]
    _read_saga_log: Callable[[], Iterable[bytes]]

    async def start(self) -> None:  # the coordinator's: recover, then serve
        raise NotImplementedError

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

    def by_key(self, key: str) -> list[tuple[str, int, Any]]:
        """``(saga id, started at ms, state)`` of the sagas indexed under ``key`` (``index_keys``),
        newest first."""
        found = [(s, self.instances[s].started_at_ms, self.instances[s].state)
                 for s in self._by_key.get(key, ()) if s in self.instances]
        return sorted(found, key=lambda entry: entry[1], reverse=True)

    def stuck(self, older_than_ms: int) -> list[tuple[str, int, Any]]:
        """``(saga id, started at ms, state)`` of the sagas needing attention, and of live ones
        older than ``older_than_ms``, oldest first."""
        now = self._clock()
        needs_attention = self.definition.needs_attention
        out = [(sid, inst.started_at_ms, inst.state) for sid, inst in self.instances.items()
               if needs_attention(inst.state) or (not inst.terminal and now - inst.started_at_ms >= older_than_ms)]
        return sorted(out, key=lambda entry: entry[1])

    def list_entries(self, status: str | None, limit: int) -> list[tuple[str, int, str, bool, bool]]:
        """``(saga id, started at ms, status, needs attention, terminal)`` of at most ``limit``
        sagas (of ``status`` when given): those needing attention first, then the live ones,
        oldest first, then the ended ones, newest first."""
        definition = self.definition
        out = []
        for sid, inst in self.instances.items():
            st = definition.status(inst.state)
            if status is None or st == status:
                out.append((sid, inst.started_at_ms, st, bool(definition.needs_attention(inst.state)), inst.terminal))
        out.sort(key=list_order)
        return out[:max(0, limit)]

    def pending_deadlines(self, saga_id: str) -> list[tuple[str, int]]:
        """``(deadline name, at ms)`` of the deadlines armed for ``saga_id`` in the timer heap, soonest
        first; none for an ended saga (its deadlines may still sit in the heap, but never fire)."""
        inst = self.instances.get(saga_id)
        if inst is None or inst.terminal:
            return []
        return sorted(((name, at) for (sid, name), at in self._armed.items() if sid == saga_id),
                      key=lambda d: (d[1], d[0]))

    async def history(self, saga_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` committed transitions of ``saga_id``, oldest first: ``seq``,
        ``at_ms``, ``status``, ``why`` and ``trigger`` (the event-log record, ``"partition:offset"``).

        Reads the coordinator's saga-topic partition from its start, in a thread.
        """
        from eventray.platform.sagas.records import decode_record

        saga_type = self.definition.name

        def read() -> list[dict[str, Any]]:
            kept: deque[dict[str, Any]] = deque(maxlen=max(1, limit))
            for value in self._read_saga_log():
                rec = decode_record(value)
                if rec.saga_id == saga_id and rec.saga_type == saga_type:
                    kept.append({"seq": rec.seq, "at_ms": rec.at_ms, "status": rec.status, "why": rec.why,
                                 "trigger": rec.trigger})
            return list(kept) if limit > 0 else []

        return await asyncio.to_thread(read)


def list_order(entry: tuple[str, int, str, bool, bool]) -> tuple[int, int]:
    """The order of :meth:`InstanceQueries.list_entries`: attention, live by age, ended newest first."""
    _, started, _, attention, terminal = entry
    if attention:
        return (0, started)
    return (2, -started) if terminal else (1, started)
