"""The demo's clients of the GraphQL endpoint: HTTP with retries, and a graphql-transport-ws subscription.

A command is retried with the same ``commandId`` while it answers ``RetryableError`` (a shard
recovering, a commit that failed) or the request itself failed in transport: the platform
applies a command id once, so a retry whose first attempt did land answers ``duplicate``.
A query is retried while its error is ``RETRYABLE`` or the response is a 429/5xx.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from types import TracebackType
from typing import Any

import httpx

__all__ = ["RESULT", "EventSubscription", "GraphQLClient", "GraphQLFailed", "mutation"]

#: the fields of a CommandResult the demo reads
RESULT = """__typename ... on CommandSuccess { version duplicate events { type data } }
            ... on CommandError { code message } ... on RuleViolationError { rule }"""

#: how long one command or query keeps being retried
RETRY_BUDGET_S = 120.0
_RETRY_STATUS = (429, 502, 503, 504)


def mutation(name: str) -> str:
    """The document of the generated mutation ``name`` (``deposit``) with its input as ``$i``."""
    return f"mutation($i: {name[0].upper()}{name[1:]}Input!) {{ r: {name}(input: $i) {{ {RESULT} }} }}"


class GraphQLFailed(RuntimeError):
    """A GraphQL request answered with errors or a non-200 status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"GraphQL call failed ({status}): {str(body)[:300]}")
        self.status = status
        errors = body.get("errors") if isinstance(body, dict) else None
        self.codes = [((e.get("extensions") or {}).get("code")) for e in errors or [] if isinstance(e, dict)]

    @property
    def retryable(self) -> bool:
        return self.status in _RETRY_STATUS or "RETRYABLE" in self.codes


class GraphQLClient:
    """Async GraphQL over HTTP with a bearer token; ``retries`` counts the retries it made."""

    def __init__(self, url: str, token: str, *, http: httpx.AsyncClient, budget_s: float = RETRY_BUDGET_S) -> None:
        self.url = url
        self.http = http
        self.headers = {"authorization": f"Bearer {token}"}
        self.budget_s = budget_s
        self.retries = 0

    async def call(self, query: str, variables: dict[str, Any] | None = None,
                   files: dict[str, tuple[str, bytes, str]] | None = None) -> dict[str, Any]:
        """One attempt; the ``data``. Raises :class:`GraphQLFailed` or an ``httpx.HTTPError``.

        ``files``: variable name -> (file name, bytes, media type), sent by the GraphQL multipart
        request spec (those variables go as null in ``operations``, the ``map`` points at them).
        """
        if files:
            names = list(files)
            operations = {"query": query, "variables": {**(variables or {}), **dict.fromkeys(names)}}
            r = await self.http.post(
                self.url, headers={**self.headers, "graphql-require-preflight": "1"},
                data={"operations": json.dumps(operations),
                      "map": json.dumps({str(i): [f"variables.{n}"] for i, n in enumerate(names)})},
                files={str(i): files[n] for i, n in enumerate(names)})
        else:
            r = await self.http.post(self.url, json={"query": query, "variables": variables or {}},
                                     headers=self.headers)
        try:
            body = r.json()
        except ValueError:  # a proxy's plain-text 5xx
            body = {"text": r.text[:300]}
        if r.status_code != 200 or "errors" in body:
            raise GraphQLFailed(r.status_code, body)
        return body["data"]

    async def query(self, query: str, variables: dict[str, Any] | None = None,
                    files: dict[str, tuple[str, bytes, str]] | None = None) -> dict[str, Any]:
        """:meth:`call`, retried on retryable errors and transport failures within the budget."""
        deadline = time.monotonic() + self.budget_s
        delay = 0.1
        while True:
            try:
                return await self.call(query, variables, files)
            except GraphQLFailed as e:
                if not e.retryable or time.monotonic() + delay > deadline:
                    raise
            except httpx.TransportError:
                if time.monotonic() + delay > deadline:
                    raise
            self.retries += 1
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def command(self, name: str, input: dict[str, Any]) -> dict[str, Any]:
        """The generated mutation ``name`` with ``input`` (a ``commandId`` is added when absent); its
        CommandResult, after retrying a ``RetryableError`` with the same ``commandId``."""
        input = {"commandId": f"demo-{uuid.uuid4().hex}", **input}
        deadline = time.monotonic() + self.budget_s
        delay = 0.1
        while True:
            result = (await self.query(mutation(name), {"i": input}))["r"]
            if result["__typename"] != "RetryableError" or time.monotonic() + delay > deadline:
                return result
            self.retries += 1
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)


class EventSubscription:
    """``events(aggregateId: ...)`` over graphql-transport-ws on the GraphQL URL, collected in the
    background while the ``async with`` block runs."""

    PROTOCOL = "graphql-transport-ws"

    def __init__(self, url: str, token: str, aggregate_id: str) -> None:
        self.url = url.replace("http://", "ws://").replace("https://", "wss://")
        self.token = token
        self.aggregate_id = aggregate_id
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> EventSubscription:
        import websockets
        from websockets.typing import Subprotocol

        self._ws = await websockets.connect(self.url, subprotocols=[Subprotocol(self.PROTOCOL)], open_timeout=20)
        await self._ws.send(json.dumps({"type": "connection_init",
                                        "payload": {"Authorization": f"Bearer {self.token}"}}))
        ack = json.loads(await asyncio.wait_for(self._ws.recv(), 20))
        if ack.get("type") != "connection_ack":
            raise GraphQLFailed(101, {"errors": [{"message": f"no connection_ack: {ack}"}]})
        await self._ws.send(json.dumps({"id": "events", "type": "subscribe", "payload": {
            "query": "subscription($id: ID) { events(aggregateId: $id) { type aggregateId version commandId } }",
            "variables": {"id": self.aggregate_id}}}))
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                if msg.get("type") == "next":
                    payload = msg.get("payload") or {}
                    if payload.get("errors"):
                        self.errors.append(str(payload["errors"])[:300])
                    else:
                        self.events.append(payload["data"]["events"])
                        self._arrived.set()
                elif msg.get("type") == "error":
                    self.errors.append(str(msg.get("payload"))[:300])
                elif msg.get("type") == "ping":
                    await self._ws.send(json.dumps({"type": "pong"}))
        except ConnectionClosed as e:
            self.errors.append(f"connection closed: {e}")

    async def wait_for(self, count: int, timeout_s: float) -> bool:
        """Whether ``count`` events have arrived within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count:
            left = deadline - time.monotonic()
            if left <= 0 or self.errors:
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                continue
        return True

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._ws is not None:
            try:
                await self._ws.send(json.dumps({"id": "events", "type": "complete"}))
            finally:
                await self._ws.close()
