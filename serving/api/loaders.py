"""A tiny per-request DataLoader: loads asked for in the same loop turn go out as one batch.

``User.accounts`` over a page of users or ``Account.owner`` over a list of accounts would
otherwise cost one read-model query per row (N+1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class DataLoader(Generic[K, V]):
    """Batches and caches loads for one request.

    Args:
        batch: ``keys -> values`` in the same order (``None`` for a missing key).
    """

    def __init__(self, batch: Callable[[Sequence[K]], Awaitable[Sequence[V]]]) -> None:
        self._batch = batch
        self._cache: dict[K, asyncio.Future[V]] = {}
        self._queue: list[K] = []
        self.calls = 0

    def load(self, key: K) -> asyncio.Future[V]:
        fut = self._cache.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self._cache[key] = fut
            if not self._queue:
                loop.call_soon(self._dispatch)
            self._queue.append(key)
        return fut

    def prime(self, key: K, value: V) -> None:
        if key not in self._cache:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(value)
            self._cache[key] = fut

    def _dispatch(self) -> None:
        keys, self._queue = self._queue, []
        asyncio.ensure_future(self._run(keys))

    async def _run(self, keys: list[K]) -> None:
        self.calls += 1
        try:
            values = await self._batch(keys)
        except Exception as e:  # noqa: BLE001 - delivered to every waiting resolver
            for key in keys:
                if not self._cache[key].done():
                    self._cache[key].set_exception(e)
            return
        for key, value in zip(keys, values):
            self._cache[key].set_result(value)


def by_key(rows: Sequence[Any], keys: Sequence[Any], attr: str) -> list[Any]:
    """Rows reordered to ``keys`` (``None`` where missing).

    ``rows`` may already hold ``None`` for keys the read model does not have yet.
    """
    index = {getattr(r, attr): r for r in rows if r is not None}
    return [index.get(k) for k in keys]
