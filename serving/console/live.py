"""The live feed: one sample a second, over Server-Sent Events, while a browser watches.

A sample carries what this replica measured itself in the last second (its
:class:`~eventray.serving.metrics.Metrics`: commands/s, GraphQL latency p50/p99, command
errors by code) and, refreshed every few seconds, what only the cluster knows: the shards'
commands/s, latency and errors by type for this app's topic (from the head's Prometheus
endpoint, :func:`eventray.platform.observability.metrics.scrape_url`), each projection's lag
(:func:`eventray.serving.console.data.projections`) and the Serve replicas of this
application. Ray's metrics agent reports every ~10 s, so the cluster figures are rates over
the last change seen, held until the next.

The sampler runs only while at least one client is connected: the first subscriber starts
it, the last one leaving stops it. A new client first gets the recent history (so its charts
do not start empty), then each sample as it is taken; a client too slow to keep up loses its
oldest samples, never blocks the others.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from eventray.serving.metrics import _BUCKETS as HTTP_BUCKETS
from eventray.serving.metrics import Metrics

log = logging.getLogger("eventray.console")

_LE = re.compile(r'le="([^"]+)"')
_ERROR_TYPE = re.compile(r'error_type="([^"]+)"')
#: seconds after which a cluster rate that saw no change reads 0 (two report intervals and a bit)
_STALE_S = 25.0


def quantile(bounds: tuple[float, ...], counts: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of a histogram (per-bucket counts, the last bucket unbounded),
    interpolated inside its bucket; ``None`` when it is empty."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0.0
    for i, n in enumerate(counts):
        if n > 0 and cumulative + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - cumulative) / n
        cumulative += n
    return bounds[-1]


class ReplicaRates:
    """Per-second figures of one replica's :class:`Metrics`, from the change since the last call."""

    def __init__(self, metrics: Metrics, *, path: str = "/graphql") -> None:
        self._metrics = metrics
        self._path = path
        self._last: tuple[float, dict[tuple[str, str], int], list[int]] | None = None

    def sample(self, now: float) -> dict[str, Any]:
        commands = dict(self._metrics.commands)
        latency = list(self._metrics.latency_counts.get(self._path) or [0] * (len(HTTP_BUCKETS) + 1))
        last, self._last = self._last, (now, commands, latency)
        if last is None:
            return {"commands_per_s": 0.0, "p50_ms": None, "p99_ms": None, "errors_per_s": {}}
        dt = max(now - last[0], 1e-3)
        delta = {k: n - last[1].get(k, 0) for k, n in commands.items()}
        errors: dict[str, float] = collections.defaultdict(float)
        for (_command, result), n in delta.items():
            if result != "ok" and n > 0:
                errors[result] += n / dt
        buckets = [max(0, a - b) for a, b in zip(latency, last[2])]
        p50, p99 = quantile(HTTP_BUCKETS, buckets, 0.5), quantile(HTTP_BUCKETS, buckets, 0.99)
        return {"commands_per_s": round(sum(n for n in delta.values() if n > 0) / dt, 2),
                "p50_ms": None if p50 is None else round(p50 * 1e3, 2),
                "p99_ms": None if p99 is None else round(p99 * 1e3, 2),
                "errors_per_s": {k: round(v, 2) for k, v in sorted(errors.items())}}


def parse_shard_totals(text: str, topic: str) -> dict[str, Any]:
    """Totals of the shards of ``topic`` in a Prometheus scrape: commands, errors by type and
    the command-latency histogram (summed over partitions and workers)."""
    commands = 0.0
    errors: dict[str, float] = collections.defaultdict(float)
    buckets: dict[float, float] = collections.defaultdict(float)
    needle = f'topic="{topic}"'
    for line in text.splitlines():
        if not line.startswith("ray_eventray_shard_command") or needle not in line:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        if line.startswith("ray_eventray_shard_commands_total{"):
            commands += value
        elif line.startswith("ray_eventray_shard_command_errors_total{"):
            m = _ERROR_TYPE.search(line)
            errors[m.group(1) if m else "?"] += value
        elif line.startswith("ray_eventray_shard_command_latency_s_bucket{"):
            m = _LE.search(line)
            if m:
                buckets[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] += value
    return {"commands": commands, "errors": dict(errors), "buckets": dict(buckets)}


class ClusterRates:
    """Rates from successive :func:`parse_shard_totals`: over the interval between the last two
    changes of the totals (the agent's report period), held until the next change or until stale."""

    def __init__(self) -> None:
        self._seen: tuple[float, dict[str, Any]] | None = None
        self._rates: dict[str, Any] = {}
        self._changed_at = 0.0

    def update(self, now: float, totals: dict[str, Any]) -> None:
        seen, self._seen = self._seen, (now, totals)
        if seen is None:
            self._changed_at = now
            return
        before = seen[1]
        if totals == before:
            self._seen = seen  # keep measuring from the last change
            return
        dt = max(now - seen[0], 1e-3)
        commands = max(0.0, totals["commands"] - before["commands"]) / dt
        errors = {k: round(max(0.0, v - before["errors"].get(k, 0.0)) / dt, 2) for k, v in totals["errors"].items()}
        bounds = sorted(b for b in totals["buckets"] if b != float("inf"))
        cumulative = [max(0.0, totals["buckets"].get(b, 0.0) - before["buckets"].get(b, 0.0))
                      for b in [*bounds, float("inf")]]
        counts = [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]
        p50 = quantile(tuple(bounds), counts, 0.5) if bounds else None
        p99 = quantile(tuple(bounds), counts, 0.99) if bounds else None
        self._rates = {"commands_per_s": round(commands, 2), "errors_per_s": {k: v for k, v in errors.items() if v},
                       "p50_ms": None if p50 is None else round(p50 * 1e3, 2),
                       "p99_ms": None if p99 is None else round(p99 * 1e3, 2)}
        self._changed_at = now

    def current(self, now: float) -> dict[str, Any]:
        if not self._rates or now - self._changed_at > _STALE_S:
            return {"commands_per_s": 0.0, "errors_per_s": {}, "p50_ms": None, "p99_ms": None}
        return dict(self._rates)


class LiveFeed:
    """The samples of one replica's live screen.

    Args:
        metrics: the replica's own metrics.
        topic: the app's topic (the shard figures of the head are filtered by it).
        scrape: fetches the head's Prometheus text (blocking; run in a thread).
        projection_lag: ``async () -> {projection: lag}``.
        replicas: ``() -> {deployment: running replicas}`` (blocking; run in a thread).
        interval_s: seconds between samples; slow_every_s: between cluster refreshes.
    """

    def __init__(self, *, metrics: Metrics, topic: str, scrape: Callable[[], str] | None,
                 projection_lag: Callable[[], Any] | None, replicas: Callable[[], Mapping[str, int]] | None,
                 interval_s: float = 1.0, slow_every_s: float = 5.0, history: int = 120,
                 slow_timeout_s: float = 4.0) -> None:
        self._metrics = metrics
        self._topic = topic
        self._scrape, self._lag, self._replicas = scrape, projection_lag, replicas
        self.interval_s = interval_s
        self._slow_every = slow_every_s
        self._slow_timeout = slow_timeout_s
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=history)
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._cluster = ClusterRates()
        self._slow: dict[str, Any] = {"lag": {}, "replicas": {}}
        self.samples_taken = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def subscribe(self) -> AsyncIterator[tuple[str, Any]]:
        """``("history", [samples])`` once, then ``("sample", sample)`` each interval, until closed."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=16)
        self._subscribers.add(queue)
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="console-live-sampler")
        try:
            yield "history", list(self._history)
            while True:
                yield "sample", await queue.get()
        finally:
            self._subscribers.discard(queue)
            if not self._subscribers and self._task is not None:
                self._task.cancel()
                self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        replica = ReplicaRates(self._metrics)
        replica.sample(time.time())  # the baseline: the first sample measures one interval
        slow: asyncio.Task[None] | None = None
        next_slow = 0.0
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                now = time.time()
                if time.monotonic() >= next_slow and (slow is None or slow.done()):
                    slow = asyncio.get_running_loop().create_task(self._refresh_cluster())
                    next_slow = time.monotonic() + self._slow_every
                sample = {"t": round(now, 3), **replica.sample(now), "shards": self._cluster.current(now),
                          **self._slow}
                self._publish(sample)
        finally:
            if slow is not None:
                slow.cancel()

    def _publish(self, sample: dict[str, Any]) -> None:
        self.samples_taken += 1
        self._history.append(sample)
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(sample)

    async def _refresh_cluster(self) -> None:
        async def shards() -> None:
            if self._scrape is not None:
                text = await asyncio.to_thread(self._scrape)
                totals = await asyncio.to_thread(parse_shard_totals, text, self._topic)
                self._cluster.update(time.time(), totals)

        async def lag() -> None:
            if self._lag is not None:
                self._slow["lag"] = dict(await self._lag())

        async def replicas() -> None:
            if self._replicas is not None:
                self._slow["replicas"] = dict(await asyncio.to_thread(self._replicas))

        for name, result in zip(("shards", "lag", "replicas"), await asyncio.gather(
                *(asyncio.wait_for(f(), self._slow_timeout) for f in (shards, lag, replicas)),
                return_exceptions=True)):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.warning("live feed: no %s figures this time: %s: %s", name, type(result).__name__, result)


def running_replicas(counts: Iterable[tuple[tuple[str, str], int]]) -> dict[str, int]:
    """``{deployment: running replicas}`` from ``replica_counts`` items."""
    out: dict[str, int] = {}
    for (deployment, state), n in counts:
        out.setdefault(deployment, 0)
        if state.upper().endswith("RUNNING"):
            out[deployment] += n
    return out


def head_scraper(settings: Any) -> Callable[[], str]:
    """A blocking fetch of the head's Prometheus text; the URL is looked up once, again after a failure."""
    import httpx

    url: list[str] = []

    def scrape() -> str:
        from eventray.platform.observability.metrics import scrape_url

        if not url:
            url.append(scrape_url(settings))
        try:
            return httpx.get(url[0], timeout=3.0).text
        except httpx.HTTPError:
            url.clear()
            raise

    return scrape
