"""The Ray shells of the saga runtime: the coordinator actor and the client that reaches them.

``SagaCoordinator`` is a named, detached, restartable async actor around
:class:`~eventray.platform.sagas.coordinator.SagaCoordinatorService`; the composition root
builds the service. :class:`SagaClient` routes each saga id to its coordinator.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import ray

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.sagas")

NAMESPACE = "eventray"


def coordinator_name(topic: str, saga: str, index: int) -> str:
    """The Ray actor name of coordinator ``index`` of saga ``saga`` on event topic ``topic``."""
    return f"saga:{topic}:{saga}:{index}"


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=10_000)  # type: ignore[call-overload]
class SagaCoordinator:
    """Coordinator of one saga-topic partition. Call ``ready`` to wait for recovery."""

    def __init__(self, settings: Settings, saga_settings: Any, saga: str, index: int,
                 scorer: Any = None) -> None:
        from eventray.platform.sagas import composition

        from eventray.platform.observability import logs

        logs.configure(json_lines=settings.log_json)
        self._metrics_task: Any = None
        self._settings, self._saga_settings, self._index = settings, saga_settings, index
        self._saga, self._scorer = saga, scorer
        self._service: Any = None
        self._composition = composition

    async def _svc(self) -> Any:
        if self._service is None:  # built inside the actor's loop: the bus binds to it
            self._service = self._composition.build_coordinator(
                self._settings, self._saga_settings, self._saga, self._index, scorer=self._scorer)
            from eventray.platform.observability.metrics import export_saga_forever

            self._metrics_task = asyncio.ensure_future(
                export_saga_forever(self._saga, self._index, self._service.describe))
        await self._service.start()
        return self._service

    async def ready(self) -> dict[str, Any]:
        return (await self._svc()).describe()

    async def request(self, request: bytes) -> bytes:
        svc = await self._svc()
        req = msgspec.msgpack.decode(request, type=svc.definition.request_type)
        return msgspec.msgpack.encode(await svc.request(req))

    async def run(self, request: bytes, timeout_s: float = 120.0) -> bytes:
        """Start (idempotently) and wait until the saga is terminal; its final state."""
        svc = await self._svc()
        req = msgspec.msgpack.decode(request, type=svc.definition.request_type)
        await svc.request(req)
        return msgspec.msgpack.encode(await svc.wait_terminal(svc.definition.saga_id(req), timeout_s))

    async def run_many(self, requests: list[bytes], timeout_s: float = 120.0) -> list[bytes | None]:
        """:meth:`run` for a batch; ``None`` for an item that failed (send it again)."""
        svc = await self._svc()
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

    async def request_many(self, requests: list[bytes]) -> list[str | None]:
        """Start a batch of sagas; the saga id of each started one, ``None`` for a failure."""
        svc = await self._svc()
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

    async def wait_any(self, saga_ids: list[str], timeout_s: float) -> list[tuple[str, bytes]]:
        """Terminal states among ``saga_ids``, as soon as one of them is terminal."""
        done = await (await self._svc()).wait_any(saga_ids, timeout_s)
        return [(sid, msgspec.msgpack.encode(state)) for sid, state in done]

    async def get(self, saga_id: str) -> bytes | None:
        state = (await self._svc()).get(saga_id)
        return None if state is None else msgspec.msgpack.encode(state)

    async def by_account(self, account_id: str) -> bytes:
        return msgspec.msgpack.encode((await self._svc()).by_account(account_id))

    async def stuck(self, older_than_ms: int) -> bytes:
        return msgspec.msgpack.encode((await self._svc()).stuck(older_than_ms))

    async def all_states(self) -> bytes:
        svc = await self._svc()
        return msgspec.msgpack.encode([i.state for i in svc.instances.values()])

    async def describe(self) -> dict[str, Any]:
        return (await self._svc()).describe()

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()

    def pid(self) -> int:
        import os

        return os.getpid()


class SagaClient:
    """Reaches the coordinators of one saga by name; safe to use from any event loop.

    Errors from a dead coordinator come back as :class:`ServiceUnavailable` (send again: a
    request is idempotent by its saga id).
    """

    def __init__(self, settings: Settings, *, coordinators: int, saga: str = "TransferMoney") -> None:
        from eventray.platform.sagas.coordinator import owner_of
        from eventray.sagas import SAGAS

        self._settings = settings
        self._n = coordinators
        self._saga = saga
        self._owner_of = owner_of
        self._definition = SAGAS[saga]
        self._state_dec = msgspec.msgpack.Decoder(self._definition.state_type)
        self._list_dec = msgspec.msgpack.Decoder(list[self._definition.state_type])  # type: ignore[name-defined]
        self._handles: dict[int, Any] = {}
        self._lanes: dict[int, list[tuple[bytes, asyncio.Future[Any]]]] = {}
        self._in_flight: dict[int, int] = {}
        self._starting: dict[int, list[tuple[bytes, str, asyncio.Future[Any]]]] = {}
        self._waiting: dict[int, dict[str, asyncio.Future[Any]]] = {}
        self._polling: dict[int, bool] = {}

    def _handle(self, index: int) -> Any:
        h = self._handles.get(index)
        if h is None:
            h = self._handles[index] = ray.get_actor(coordinator_name(self._settings.topic, self._saga, index),
                                                     namespace=NAMESPACE)
        return h

    async def _call(self, index: int, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
        try:
            return await asyncio.wait_for(getattr(self._handle(index), method).remote(*args), timeout_s)
        except Exception as e:
            self._handles.pop(index, None)
            from eventray.platform.errors import EventrayError

            cause = getattr(e, "cause", None)
            if isinstance(cause, EventrayError):
                raise cause from None
            if isinstance(e, EventrayError):
                raise
            raise ServiceUnavailable(f"saga coordinator {index} unavailable ({type(e).__name__}); retry") from e

    def owner(self, saga_id: str) -> int:
        return self._owner_of(saga_id, self._n)

    async def request(self, request: Any) -> Any:
        """Start a saga (idempotent by its id); its state once the start is committed."""
        sid = self._definition().saga_id(request)
        return self._state_dec.decode(await self._call(self.owner(sid), "request", msgspec.msgpack.encode(request)))

    async def run(self, request: Any, timeout_s: float = 120.0) -> Any:
        """Start a saga and wait for its terminal state."""
        sid = self._definition().saga_id(request)
        return self._state_dec.decode(await self._call(self.owner(sid), "run", msgspec.msgpack.encode(request),
                                                       timeout_s, timeout_s=timeout_s + 10))

    async def run_batched(self, request: Any, timeout_s: float = 120.0) -> Any:
        """:meth:`run`, micro-batched: concurrent calls for one coordinator share one Ray call
        (a Ray call costs about as much CPU as a hundred transfers' coordination)."""
        sid = self._definition().saga_id(request)
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
            results = await self._call(index, "run_many", [r for r, _ in batch], timeout_s, timeout_s=timeout_s + 10)
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
        sid = self._definition().saga_id(request)
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
            ids = await self._call(index, "request_many", [r for r, _, _ in batch])
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
                    done = await self._call(index, "wait_any", list(waiting), 0.5)
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
        raw = await self._call(self.owner(saga_id), "get", saga_id)
        return None if raw is None else self._state_dec.decode(raw)

    async def by_account(self, account_id: str) -> list[Any]:
        parts = await asyncio.gather(*(self._call(i, "by_account", account_id) for i in range(self._n)))
        out = [s for raw in parts for s in self._list_dec.decode(raw)]
        return sorted(out, key=lambda s: getattr(s, "requested_at_ms", 0), reverse=True)

    async def stuck(self, older_than_ms: int = 60_000) -> list[Any]:
        parts = await asyncio.gather(*(self._call(i, "stuck", older_than_ms) for i in range(self._n)))
        return [s for raw in parts for s in self._list_dec.decode(raw)]

    async def all_states(self) -> list[Any]:
        parts = await asyncio.gather(*(self._call(i, "all_states") for i in range(self._n)))
        return [s for raw in parts for s in self._list_dec.decode(raw)]

    async def describe(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._call(i, "describe") for i in range(self._n))))
