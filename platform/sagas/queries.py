"""What a saga coordinator answers about its instances: waits, lookups and listings.

A mixin of :class:`~.coordinator.SagaCoordinatorService`, which owns the instances (rebuilt
from the saga topic on recovery, updated after every committed transition).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from eventray.platform.sagas.definition import SagaDefinition

__all__ = ["InstanceQueries"]


class InstanceQueries:
    """Reads over the coordinator's committed saga instances."""

    definition: SagaDefinition[Any]
    instances: dict[str, Any]
    _waiters: dict[str, list[asyncio.Future[Any]]]
    _by_key: dict[str, list[str]]
    _clock: Callable[[], int]

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
