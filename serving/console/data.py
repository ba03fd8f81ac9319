"""The console's data layer: bounded queries over a replica's :class:`ApiServices`, as plain data.

Every function returns dicts and lists that ``json.dumps`` accepts (dict keys may be ints).
Every query is bounded: a row limit checked against a range (:class:`ConsoleInputInvalid`
outside it) and ``statement_timeout`` (:data:`STATEMENT_TIMEOUT_MS`) inside its transaction.
Events come from the app's event index (:mod:`eventray.platform.projections.event_index`),
which Kafka cannot replace: it finds records by position only.

The console is read-only but for replay (:func:`start_replay`), which is logged with its
subject on ``eventray.console.audit``. Per-replica state (Kafka end-offset readers, lag
samples) lives in a :class:`ConsoleState` per services; :func:`close` releases it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from typing import Any, Union

import msgspec
from psycopg import sql

from eventray.platform._postgres import translated
from eventray.platform.errors import ConcurrencyConflict, InvalidCommand, NotFound, ServiceUnavailable
from eventray.platform.errors import UndecodableEvent
from eventray.platform.projections.event_index import event_index_name
from eventray.platform.projections.reads import read_current

__all__ = [
    "ConsoleInputInvalid", "ConsoleState", "HistoryTooLong", "ReplayRunning", "SagaNotFound", "UnknownReplay",
    "aggregate_types", "close", "cluster", "console_state", "correlation_chain", "dead_letters", "events_of",
    "projections", "replay_progress", "saga_detail", "sagas", "start_replay",
]

log = logging.getLogger("eventray.console")
audit = logging.getLogger("eventray.console.audit")

STATEMENT_TIMEOUT_MS = 5_000
#: the most events :func:`events_of` folds to show states
MAX_FOLD = 10_000
_EVENT_COLUMNS = ('version, event_type, floor(extract(epoch FROM ts) * 1000)::bigint, partition, "offset", '
                  "command_id, correlation_id, subject, payload::text, aggregate_type, aggregate_id")


class ConsoleInputInvalid(InvalidCommand):
    """A console query's input is not valid (a limit out of range, an unknown name)."""

    code = "CONSOLE_INPUT"


class HistoryTooLong(ConsoleInputInvalid):
    """The aggregate has more events than the console folds into states."""

    code = "HISTORY_TOO_LONG"


class ReplayRunning(ConcurrencyConflict):
    """A replay of the projection is already running on this replica."""

    code = "REPLAY_RUNNING"


class UnknownReplay(NotFound):
    """No replay with that id was started on this replica."""

    code = "UNKNOWN_REPLAY"


class SagaNotFound(NotFound):
    """The saga has no instance with that id."""

    code = "SAGA_NOT_FOUND"


def _limit(value: Any, name: str, *, high: int) -> int:
    if type(value) is not int or not 1 <= value <= high:
        raise ConsoleInputInvalid(f"{name} must be an integer from 1 to {high}, got {value!r}", field=name)
    return value


def _text(value: Any, name: str, *, max_len: int = 500) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ConsoleInputInvalid(f"{name} must be a non-empty string of at most {max_len} characters", field=name)
    return value


async def _fetch(conn: Any, query: Any, params: Any = ()) -> list[tuple[Any, ...]]:
    """Rows of ``query`` in a transaction of its own, under the console's statement timeout."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def _pooled(services: Any, query: Any, params: Any = (), *, doing: str) -> list[tuple[Any, ...]]:
    with translated(doing):
        async with services.pool.connection() as conn:
            return await _fetch(conn, query, params)


async def _index(services: Any, where: str, params: tuple[Any, ...], order: str, limit: int) -> list[tuple[Any, ...]]:
    """Rows of the app's event index (current version): ``_EVENT_COLUMNS`` ``WHERE where``."""
    name = event_index_name(services.runtime.app.name)
    if name not in services.runtime.app.projections:
        raise ServiceUnavailable(f"app {services.runtime.app.name!r} has no event index (App(..., event_index=False))")

    async def query(conn: Any, schema: str) -> list[tuple[Any, ...]]:
        stmt = sql.SQL(f"SELECT {_EVENT_COLUMNS} FROM {{}}.events WHERE {where} ORDER BY {order} LIMIT %s").format(
            sql.Identifier(schema))
        return await _fetch(conn, stmt, (*params, limit))

    return await read_current(services.pool, name, query)


def _event(row: tuple[Any, ...], *, where: bool = False) -> dict[str, Any]:
    out = {"version": row[0], "event_type": row[1], "timestamp": int(row[2]), "partition": row[3],
           "offset": row[4], "command_id": row[5], "correlation_id": row[6], "subject": row[7],
           "payload": msgspec.json.decode(row[8])}
    if where:
        out["aggregate_type"], out["aggregate_id"] = row[9], row[10]
    return out


# --- events ------------------------------------------------------------------------------------


def aggregate_types(rt: Any) -> list[str]:
    """The names of the app's aggregate types, as declared."""
    return [a.name for a in rt.app.aggregates]


@functools.lru_cache(maxsize=64)
def _event_decoder(aggregate: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(Union[tuple(aggregate.events)])  # type: ignore[arg-type]


def _diff(before: Any, after: Any, prefix: str = "") -> list[dict[str, Any]]:
    """``{"field", "before", "after"}`` of every changed field; nested dicts by dotted path (a
    creating event lists every field, from ``None``)."""
    if not prefix and before is None and isinstance(after, dict):
        before = {}
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in [*after, *(k for k in before if k not in after)]:
            b, a = before.get(key), after.get(key)
            if b != a:
                path = f"{prefix}{key}"
                out.extend(_diff(b, a, path + ".") if isinstance(b, dict) and isinstance(a, dict)
                           else [{"field": path, "before": b, "after": a}])
        return out
    return [] if before == after else [{"field": prefix.rstrip(".") or "state", "before": before, "after": after}]


async def events_of(services: Any, aggregate_type: str, aggregate_id: str, *, before_version: int | None = None,
                    limit: int = 50) -> dict[str, Any]:
    """A page of one aggregate's events, newest first, each with the state after it and the diff.

    Args:
        before_version: only events older than this version (the previous page's
            ``next_before_version``); ``None``: from the newest.
        limit: events per page, 1..500.

    Returns:
        ``{"items": [{version, event_type, timestamp (ms), partition, offset, command_id,
        correlation_id, subject, payload, state_after, diff}], "next_before_version": int | None}``.

    Raises:
        ConsoleInputInvalid: an unknown aggregate type, a bad limit or version.
        HistoryTooLong: more than :data:`MAX_FOLD` events would be folded.
        ProjectionUnavailable: the event index is not built yet.
    """
    limit = _limit(limit, "limit", high=500)
    _text(aggregate_id, "aggregate_id")
    aggregate = next((a for a in services.runtime.app.aggregates if a.name == aggregate_type), None)
    if aggregate is None:
        raise ConsoleInputInvalid(f"no aggregate type {aggregate_type!r}; known: "
                                  f"{', '.join(aggregate_types(services.runtime))}", field="aggregate_type")
    if before_version is not None and (type(before_version) is not int or before_version < 1):
        raise ConsoleInputInvalid(f"before_version must be a positive integer, got {before_version!r}",
                                  field="before_version")
    where = "aggregate_type = %s AND aggregate_id = %s"
    params: tuple[Any, ...] = (aggregate_type, aggregate_id)
    if before_version is not None:
        where, params = where + " AND version < %s", (*params, before_version)
    rows = await _index(services, where, params, "version", MAX_FOLD + 1)
    if len(rows) > MAX_FOLD:
        raise HistoryTooLong(
            f"{aggregate_type} {aggregate_id} has more than {MAX_FOLD:,} events"
            f"{'' if before_version is None else f' before version {before_version}'}; the console folds at most "
            f"{MAX_FOLD:,} to show states: page with before_version={MAX_FOLD + 1} or lower", limit=MAX_FOLD)
    decode, evolve = _event_decoder(aggregate).decode, aggregate.evolve
    state: Any = None
    states: list[Any] = []
    for row in rows:
        try:
            state = evolve(state, decode(row[8]))
        except msgspec.DecodeError as e:
            raise UndecodableEvent(f"{aggregate_type} {aggregate_id} v{row[0]} ({row[1]}) in the event index does "
                                   f"not decode as a current event: {e}") from e
        states.append(msgspec.to_builtins(state))
    first = max(0, len(rows) - limit)
    items = []
    for i in range(len(rows) - 1, first - 1, -1):
        item = _event(rows[i])
        item["state_after"] = states[i]
        item["diff"] = _diff(states[i - 1] if i > 0 else None, states[i])
        items.append(item)
    return {"items": items, "next_before_version": rows[first][0] if first > 0 else None}


async def correlation_chain(services: Any, correlation_id: str, *, limit: int = 200) -> dict[str, Any]:
    """What one correlation id (a request) caused: its commands, their events, the sagas among
    them and whether each current projection has applied them.

    Returns:
        ``{"commands": [command ids, first seen first], "events": [{..., aggregate_type,
        aggregate_id}] oldest first, "sagas": [{"saga", "saga_id", "status"}], "projections":
        [{"name", "version", "applied", "pending", "handles"}], "truncated": bool}``.
    """
    limit = _limit(limit, "limit", high=1_000)
    _text(correlation_id, "correlation_id")
    rows = await _index(services, "correlation_id = %s", (correlation_id,), 'ts, partition, "offset"', limit + 1)
    events = [_event(r, where=True) for r in rows[:limit]]
    commands = list(dict.fromkeys(e["command_id"] for e in events if e["command_id"]))
    candidates = list(dict.fromkeys([correlation_id, *(c.rsplit(":", 2)[0] for c in commands if c.count(":") >= 2)]))
    found = []
    for saga, client in services.sagas.items():
        for saga_id in candidates[:50]:
            try:
                state = await client.get(saga_id)
            except Exception as e:  # noqa: BLE001 - coordinators down: the chain without its sagas
                log.warning("console: saga %s unavailable for correlation %s: %s: %s", saga, correlation_id,
                            type(e).__name__, e)
                break
            if state is not None:
                found.append({"saga": saga, "saga_id": saga_id, "status": client.status(state)})
    applied = []
    for row in await _status_rows(services):
        if not row["current"]:
            continue
        cls = services.runtime.app.projections[row["name"]]
        pending = sum(1 for e in events if row["offsets"].get(e["partition"], 0) <= e["offset"])
        handled = {t.__name__ for t in cls._handlers}
        applied.append({"name": row["name"], "version": row["version"], "applied": pending == 0, "pending": pending,
                        "handles": any(e["event_type"] in handled for e in events)})
    return {"commands": commands, "events": events, "sagas": found, "projections": applied,
            "truncated": len(rows) > limit}


# --- projections --------------------------------------------------------------------------------


class ConsoleState:
    """Per-replica console state: cached end-offset readers, lag samples, their settings.

    ``sample_every_s``: at most one lag sample per this long; ``stall_after_s``: a version with
    lag and no progress since the sample this old is stalled; ``history`` samples are kept.
    """

    def __init__(self, *, sample_every_s: float = 5.0, stall_after_s: float = 30.0, history: int = 60) -> None:
        self.sample_every_s, self.stall_after_s, self.history = sample_every_s, stall_after_s, history
        self._lock = threading.Lock()
        self._ends: dict[tuple[str, int], Any] = {}
        self.samples: dict[tuple[str, int], deque[tuple[float, int, int]]] = {}
        self.sampled_at = float("-inf")

    def heads(self, bootstrap: str, topic: str, partitions: int, tls: Any = None) -> dict[int, int]:
        """The last stable offset of each partition (blocking: call in a thread)."""
        from eventray.platform.projections.replay import LogEnds

        with self._lock:
            ends = self._ends.get((topic, partitions))
            if ends is None:
                ends = self._ends[(topic, partitions)] = LogEnds(bootstrap, topic, partitions, tls=tls)
            try:
                return ends()
            except Exception as e:
                self._ends.pop((topic, partitions)).close()
                raise ServiceUnavailable(f"reading the end offsets of {topic!r}: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        with self._lock:
            for ends in self._ends.values():
                ends.close()
            self._ends.clear()


_states: dict[int, tuple[weakref.ref[Any], ConsoleState]] = {}


def console_state(services: Any) -> ConsoleState:
    """The :class:`ConsoleState` of ``services`` (made on first use, closed with :func:`close`)."""
    hit = _states.get(id(services))
    if hit is not None and hit[0]() is services:
        return hit[1]
    state = ConsoleState()
    _states[id(services)] = (weakref.ref(services), state)
    weakref.finalize(services, state.close)
    return state


async def close(services: Any) -> None:
    """Release the console's Kafka clients of ``services`` (call before ``services.close()``)."""
    hit = _states.pop(id(services), None)
    if hit is not None:
        await asyncio.to_thread(hit[1].close)


async def _status_rows(services: Any) -> list[dict[str, Any]]:
    from eventray.platform.projections.store import STATUS_SQL

    rt = services.runtime
    rows = await _pooled(services, f"SELECT * FROM ({STATUS_SQL}) s LIMIT 1000", doing="reading projection status")
    return [{"name": r[0], "version": r[1], "current": bool(r[2]), "status": r[3],
             "offsets": {int(k): int(v) for k, v in (r[4] or {}).items()}, "applied": int(r[5] or 0),
             "dead_letters": int(r[6]), "definition_version": r[7], "reason": r[8], "partitions": r[10]}
            for r in rows if r[9] == rt.topic and r[0] in rt.app.projections]


async def projections(services: Any) -> list[dict[str, Any]]:
    """Each version of the app's projections on its topic, with its position against the log's head.

    Returns:
        ``[{"name", "version", "current", "status", "reason", "offsets" {partition: next
        offset}, "head_offsets" {partition: last stable offset}, "lag", "applied",
        "dead_letters", "definition_version", "outdated", "stalled", "lag_history" [{"at_ms",
        "lag"}] oldest first}]``; one lag sample per version at most every ``sample_every_s``.
    """
    rt, state = services.runtime, console_state(services)
    rows = await _status_rows(services)
    heads: dict[int, dict[int, int]] = {}
    for n in {r["partitions"] for r in rows}:
        heads[n] = await asyncio.to_thread(state.heads, rt.settings.kafka_address, rt.topic, n,
                                          rt.settings.tls_files())
    now = time.time()
    sample = now - state.sampled_at >= state.sample_every_s
    if sample:
        state.sampled_at = now
    out = []
    for r in rows:
        head = heads[r["partitions"]]
        offs = r["offsets"]
        lag = sum(max(0, h - offs.get(p, 0)) for p, h in head.items())
        position = sum(offs.values())
        samples = state.samples.setdefault((r["name"], r["version"]), deque(maxlen=state.history))
        older = [s for s in samples if now - s[0] >= state.stall_after_s]
        stalled = lag > 0 and bool(older) and older[-1][2] == position
        if sample:
            samples.append((now, lag, position))
        out.append({**{k: r[k] for k in ("name", "version", "current", "status", "reason", "offsets", "applied",
                                         "dead_letters", "definition_version")},
                    "head_offsets": head, "lag": lag, "stalled": stalled,
                    "outdated": r["definition_version"] != rt.app.projections[r["name"]].version,
                    "lag_history": [{"at_ms": int(t * 1000), "lag": g} for t, g, _ in samples]})
    return out


async def dead_letters(services: Any, name: str, version: int, *, limit: int = 50) -> dict[str, Any]:
    """The newest dead letters of a projection version.

    Returns:
        ``{"items": [{"partition", "offset", "reason", "event_type", "key", "created_at_ms",
        "size"}] newest first, "total": int}``.
    """
    limit = _limit(limit, "limit", high=500)
    if name not in services.runtime.app.projections:
        raise ConsoleInputInvalid(f"no projection {name!r}; known: {', '.join(services.runtime.app.projections)}",
                                  field="name")
    if type(version) is not int or version < 1:
        raise ConsoleInputInvalid(f"version must be a positive integer, got {version!r}", field="version")
    rows = await _pooled(services, (
        "SELECT partition, log_offset, reason, event_type, record_key, "
        "floor(extract(epoch FROM created_at) * 1000)::bigint, octet_length(raw), count(*) OVER () "
        "FROM eventray_projection_dead_letters WHERE name = %s AND version = %s ORDER BY id DESC LIMIT %s"),
        (name, version, limit), doing=f"reading dead letters of {name!r} v{version}")
    return {"items": [{"partition": r[0], "offset": r[1], "reason": r[2], "event_type": r[3],
                       "key": None if r[4] is None else bytes(r[4]).decode("utf-8", "replace"),
                       "created_at_ms": int(r[5]), "size": r[6]} for r in rows],
            "total": int(rows[0][7]) if rows else 0}


class _Replay:
    def __init__(self, name: str, subject: str) -> None:
        self.name, self.subject, self.started_at_ms = name, subject, int(time.time() * 1000)
        self.progress: dict[str, Any] = {"phase": "starting", "done": 0, "total": 0, "lag": None,
                                         "events_per_s": 0.0, "error": None}
        self.thread: threading.Thread | None = None


_replays: dict[str, _Replay] = {}
_replays_lock = threading.Lock()


async def start_replay(services: Any, name: str, *, subject: str) -> str:
    """Rebuild projection ``name`` (``eventray replay NAME``) in a thread; the replay's id.

    Logs an audit line naming ``subject`` on ``eventray.console.audit``.

    Raises:
        ConsoleInputInvalid: an unknown projection or no subject.
        ReplayRunning: a replay of ``name`` started on this replica is still running.
    """
    from eventray.platform.projections.replay import replay

    rt = services.runtime
    if name not in rt.app.projections:
        raise ConsoleInputInvalid(f"no projection {name!r}; known: {', '.join(rt.app.projections)}", field="name")
    subject = _text(subject, "subject")
    with _replays_lock:
        running = next((rid for rid, r in _replays.items() if r.name == name and r.thread and r.thread.is_alive()), None)
        if running is not None:
            raise ReplayRunning(f"a replay of {name!r} is running (replay {running}); wait for it", replay_id=running)
        rid = uuid.uuid4().hex[:12]
        job = _replays[rid] = _Replay(name, subject)
        for old in [k for k, r in _replays.items() if not (r.thread and r.thread.is_alive())][:-50]:
            _replays.pop(old, None)  # keep the last 50 finished ones

        def progress(p: dict[str, Any]) -> None:
            # "live" is the job's to set, with the new version in the same update: a poll
            # between the two would stop at "live" without ever learning which version it is
            job.progress.update({**p, "phase": "switching"} if p.get("phase") == "live" else p)

        def run() -> None:
            try:
                report = replay(rt, name, on_progress=progress)
            except Exception as e:  # noqa: BLE001 - reported through replay_progress and the audit log
                job.progress.update(phase="failed", error=f"{type(e).__name__}: {e}")
                audit.warning("replay %s of projection %s requested by %s failed: %s: %s", rid, name, subject,
                              type(e).__name__, e)
            else:
                job.progress.update(phase="live", version=report.new_version)
                audit.info("replay %s of projection %s requested by %s finished: v%d is current (was %s)", rid,
                           name, subject, report.new_version, report.old_version)

        audit.info("replay %s of projection %s on %s requested by %s", rid, name, rt.topic, subject)
        job.thread = threading.Thread(target=run, name=f"console-replay-{name}", daemon=True)
        job.thread.start()
    return rid


def replay_progress(replay_id: str) -> dict[str, Any]:
    """Where a replay started here stands (not async: no I/O).

    Returns:
        ``{"phase" ("starting", "catching up", "switching", "live", "failed"), "done",
        "total", "lag", "events_per_s", "error", "name", "subject", "started_at_ms"}`` and,
        once live, ``"version"``.
    """
    job = _replays.get(replay_id)
    if job is None:
        raise UnknownReplay(f"no replay {replay_id!r} was started on this replica", replay_id=replay_id)
    return {**{k: job.progress.get(k) for k in ("phase", "done", "total", "lag", "events_per_s", "error")},
            **({"version": job.progress["version"]} if "version" in job.progress else {}),
            "name": job.name, "subject": job.subject, "started_at_ms": job.started_at_ms}


# --- sagas and cluster --------------------------------------------------------------------------


async def sagas(services: Any, *, status: str | None = None, limit: int = 100) -> dict[str, Any]:
    """The app's saga instances: needing attention first, then live oldest first, then ended.

    Returns:
        ``{"items": [{"saga", "saga_id", "started_at_ms", "status", "needs_attention",
        "terminal"}], "unavailable": {saga: reason}}``.
    """
    from eventray.platform.sagas.queries import list_order

    limit = _limit(limit, "limit", high=1_000)
    if status is not None:
        _text(status, "status", max_len=100)
    items: list[tuple[tuple[int, int], dict[str, Any]]] = []
    unavailable = {}
    for saga, client in services.sagas.items():
        try:
            entries = await client.list_entries(status, limit)
        except Exception as e:  # noqa: BLE001 - one saga's coordinators down: list the others
            log.warning("console: saga %s unavailable: %s: %s", saga, type(e).__name__, e)
            unavailable[saga] = f"{type(e).__name__}: {e}"
            continue
        items.extend((list_order(e), {"saga": saga, "saga_id": e[0], "started_at_ms": e[1], "status": e[2],
                                      "needs_attention": e[3], "terminal": e[4]}) for e in entries)
    items.sort(key=lambda item: item[0])
    return {"items": [i for _, i in items[:limit]], "unavailable": unavailable}


async def saga_detail(services: Any, saga: str, saga_id: str) -> dict[str, Any]:
    """One saga instance: its state, its committed transitions, its armed deadlines and the
    commands it sent, with their events (from the event index).

    Returns:
        ``{"saga", "saga_id", "status", "needs_attention", "state", "history": [{"seq",
        "at_ms", "status", "why", "trigger"}] oldest first, "deadlines": [{"name", "at_ms"}],
        "commands": [{"command_id", "events": [...]}]}``.
    """
    if saga not in services.sagas:
        raise ConsoleInputInvalid(f"no saga {saga!r}; known: {', '.join(services.sagas) or 'none'}", field="saga")
    _text(saga_id, "saga_id")
    client = services.sagas[saga]
    state = await client.get(saga_id)
    if state is None:
        raise SagaNotFound(f"saga {saga} has no instance {saga_id!r}", saga=saga, saga_id=saga_id)
    history, deadlines = await asyncio.gather(client.history(saga_id, 500), client.pending_deadlines(saga_id))
    prefix = saga_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"
    rows = await _index(services, "command_id LIKE %s", (prefix,), 'ts, partition, "offset"', 500)
    commands: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        commands.setdefault(r[5], []).append(_event(r, where=True))
    return {"saga": saga, "saga_id": saga_id, "status": client.status(state),
            "needs_attention": client.needs_attention(state), "state": msgspec.to_builtins(state),
            "history": history, "deadlines": [{"name": n, "at_ms": at} for n, at in deadlines],
            "commands": [{"command_id": c, "events": e} for c, e in commands.items()]}


async def cluster(services: Any) -> dict[str, Any]:
    """:func:`eventray.platform.deploy.status.cluster_status` of the app (nodes, actors, Serve, lags)."""
    from eventray.platform.deploy.status import cluster_status

    return await asyncio.to_thread(cluster_status, services.runtime)
