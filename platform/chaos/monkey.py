"""``eventray chaos monkey``: seeded random faults under an app's workload, then the invariants.

The app names its workload, ``App(chaos="module:attr")``: a factory
``workload(rt, tag, rng, saga_settings) -> Workload`` (see :class:`Workload`). The monkey runs
the workload's ``setup``, then a few copies of its ``worker`` while a schedule drawn from
``random.Random(seed)`` injects the faults of :mod:`.faults`, one at a time, every kind once
before any repeats. Then it checks the platform's invariant itself:

* **lost**: an acknowledged command whose events are not (all) in the committed log;
* **duplicated**: a command applied more than once: its events repeat, or fall into more than
  one decision (one decision's events are consecutive versions of one aggregate), or exceed
  what its acknowledgement reported;

and asks the workload for the domain's (``Workload.check``): **mismatched** read models, and
whatever else the domain promises (money conserved, sagas ended), as report lines.

The factory's module may also define ``prepare(rt)``: what the chaos stack
(:mod:`eventray.platform.chaos.stack`) starts beside the shards for the workload (projection
runners, saga coordinators and their policy).

The last line printed is ``N faults, L lost, D duplicated, M mismatched``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventray.platform.chaos import faults
from eventray.platform.errors import ConfigurationError, Retryable
from eventray.platform.settings import Settings

__all__ = ["KINDS", "Acked", "CommandSender", "GraphQLSender", "Ingress", "MonkeyReport", "Targets", "Workload",
           "WorkloadFactory",
           "available_kinds", "check_log", "ingress_of", "inject", "load_workload", "projection_caught_up", "run",
           "stack_preparation"]

log = logging.getLogger("eventray.chaos.monkey")

#: how long after a fault's recovery the monkey waits for the workload's next acknowledgement
FLOWING_WAIT_S = 60.0

KINDS = ("kill-shard", "kill-runner", "kill-coordinator", "pause-kafka", "restart-kafka",
         "restart-postgres", "delay-kafka", "reset-kafka", "loss-kafka", "outage-postgres", "starve-shard",
         "partition-postgres", "disk-full-kafka", "disk-full-postgres", "oom-runner", "kill-replica")
#: the kinds that act through the stack's Toxiproxy in front of the broker
PROXY_KINDS = ("reset-kafka", "loss-kafka")
#: the fault kinds whose windows the availability goal leaves out (commands cannot flow in them)
AVAILABILITY_EXCLUDES = ("restart-kafka", "disk-full-")
WORKERS = 4


@dataclass
class MonkeyReport:
    """The outcome of a run: the faults, the platform's findings, and the workload's.

    ``mismatched``, ``lines`` and ``domain_ok`` are the workload's to fill (``Workload.check``).
    """

    faults: list[faults.FaultResult] = field(default_factory=list)
    #: per fault (same order as ``faults``): seconds from its start until the workload had a new
    #: acknowledgement after the target answered again; ``None`` when none came in the wait
    flowing: list[float | None] = field(default_factory=list)
    fault_errors: list[str] = field(default_factory=list)
    skipped_kinds: dict[str, str] = field(default_factory=dict)
    acked: int = 0
    retries: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    #: read-model rows that differ from the committed state, one line each
    mismatched: list[str] = field(default_factory=list)
    #: the domain's own findings, printed after the projection mismatches
    lines: list[str] = field(default_factory=list)
    #: False when the domain found a broken promise of its own (not counted in ``mismatched``)
    domain_ok: bool = True
    #: monotonic times at which the workload had new acknowledgements (sampled every 50 ms)
    ack_times: list[float] = field(default_factory=list)
    #: (kind, start, end) of each fault: from its start until commands were acknowledged again
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    #: monotonic start and end of the workload's run under faults
    span: tuple[float, float] = (0.0, 0.0)

    def slowest(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in self.faults:
            out[f.kind] = max(out.get(f.kind, 0.0), f.recovered_s)
        return out

    def slowest_flowing(self) -> dict[str, float | None]:
        """Per kind, the longest time from a fault's start until commands were acknowledged again
        (``None`` when, for one of its faults, none was within the wait)."""
        out: dict[str, float | None] = {}
        for f, s in zip(self.faults, self.flowing, strict=True):
            before = out.get(f.kind, 0.0)
            out[f.kind] = None if s is None or before is None else max(before, s)
        return out

    def availability(self, excluding: tuple[str, ...] = ()) -> tuple[float, int]:
        """(share, seconds): of the run's whole seconds, those in which a command was acknowledged;
        seconds that overlap a fault whose kind starts with one of ``excluding`` are left out."""
        start, end = self.span
        skip = [(a, b) for k, a, b in self.windows if k.startswith(excluding)] if excluding else []
        acked = {int(t - start) for t in self.ack_times if start <= t < end}
        counted = [i for i in range(int(end - start))
                   if not any(a < start + i + 1 and b > start + i for a, b in skip)]
        if not counted:
            return 1.0, 0
        return sum(1 for i in counted if i in acked) / len(counted), len(counted)

    def longest_gap(self) -> tuple[float, str]:
        """The longest time without an acknowledged command in the run, and the faults it overlapped."""
        start, end = self.span
        times = [start, *sorted(t for t in self.ack_times if start <= t <= end), end]
        gap, a, b = max((b - a, a, b) for a, b in zip(times, times[1:], strict=False))
        during = sorted({k for k, s, e in self.windows if s < b and e > a})
        return gap, ", ".join(during) or "no fault"

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched or self.fault_errors) and self.domain_ok

    def _availability_lines(self) -> list[str]:
        if self.span[1] <= self.span[0]:
            return []
        share, seconds = self.availability()
        outside, rest = self.availability(AVAILABILITY_EXCLUDES)
        gap, during = self.longest_gap()
        rate = self.acked / max(1e-9, self.span[1] - self.span[0])
        return [f"command rate: {rate:.0f}/s over {self.span[1] - self.span[0]:.0f}s",
                f"command availability: {share:.1%} of {seconds} s; {outside:.1%} of the {rest} s outside "
                f"{' and '.join(k + '*' for k in AVAILABILITY_EXCLUDES)} windows",
                f"longest gap without an acknowledged command: {gap:.2f}s (during: {during})"]

    def closing_line(self) -> str:
        return (f"{len(self.faults)} faults, {len(self.lost)} lost, {len(self.duplicated)} duplicated, "
                f"{len(self.mismatched)} mismatched")

    def render(self) -> str:
        lines = [f"faults injected: {len(self.faults)}"]
        flowing = self.slowest_flowing()
        for kind, n in sorted(Counter(f.kind for f in self.faults).items()):
            back = flowing.get(kind)
            lines.append(f"  {kind:18s} x{n:<3d} slowest recovery {self.slowest()[kind]:.2f}s, commands "
                         + (f"acknowledged again {back:.2f}s after the fault began" if back is not None
                            else f"not acknowledged within {FLOWING_WAIT_S:.0f}s of recovery"))
        for kind, why in self.skipped_kinds.items():
            lines.append(f"  {kind:18s} skipped: {why}")
        lines += [f"fault errors: {len(self.fault_errors)}" + "".join(f"\n  {e}" for e in self.fault_errors[:5]),
                  f"acknowledged commands: {self.acked} ({self.retries} retries)",
                  *self._availability_lines(),
                  f"acknowledged commands lost: {len(self.lost)} {self.lost[:5]}",
                  f"commands applied twice: {len(self.duplicated)} {self.duplicated[:5]}",
                  f"projection mismatches: {len(self.mismatched)} {self.mismatched[:5]}",
                  *self.lines,
                  self.closing_line()]
        return "\n".join(lines)


# --------------------------------------------------------------------------- the workload protocol


@dataclass(frozen=True)
class Acked:
    """An acknowledged command: where it applied and what its acknowledgement said.

    Attributes:
        aggregate_id: the aggregate it addressed.
        version: the aggregate's version after the command's (first) application.
        events: how many events the acknowledgement reported; ``None`` when it did not say
            (a repeat answered by a recovered shard, which remembers only the version).
    """

    aggregate_id: str
    version: int
    events: int | None


class Workload(Protocol):
    """What the monkey drives against an app, and the app's own invariants.

    Built by the app's factory ``workload(rt, tag, rng, saga_settings)`` inside the monkey's
    event loop, with Ray joined: ``rt`` is the app's runtime (effective settings), ``tag`` a
    prefix unique to the run that every aggregate id the workload writes starts with (the
    monkey reads those aggregates' records back), ``rng`` the workload's own seeded random
    source, ``saga_settings`` the stack's :class:`~eventray.platform.sagas.settings.SagaSettings`.
    """

    #: the projection whose runners ``kill-runner`` kills; ``None`` skips that kind
    projection: str | None
    #: the saga whose coordinators ``kill-coordinator`` kills; ``None`` skips that kind
    saga: str | None
    # optional: ``ingress``, an :class:`Ingress` the workload sends through once ``setup`` ran
    # (``kill-replica`` kills its replicas); absent or ``None`` skips that kind

    @property
    def acked(self) -> Mapping[str, Acked]:
        """Command id -> :class:`Acked`, for every command acknowledged so far (:class:`CommandSender`)."""

    @property
    def retries(self) -> int:
        """Sends repeated after a retryable error."""

    async def setup(self, deadline: float) -> None:
        """Before any fault: create what the workers need; give up at ``deadline`` (monotonic)."""

    async def worker(self, stop: asyncio.Event, deadline: float) -> None:
        """Send commands until ``stop`` is set; a send in flight gives up at ``deadline``."""

    async def check(self, report: MonkeyReport) -> None:
        """After the faults: fill ``report.mismatched``, ``report.lines`` and ``report.domain_ok``."""


#: ``workload(rt, tag, rng, saga_settings) -> Workload``, what ``App.chaos`` names
WorkloadFactory = Callable[[Any, str, random.Random, Any], Workload]


class CommandSender:
    """Sends commands through a command bus, each resent with its own ``command_id`` until
    acknowledged: idempotency makes that safe, and the acknowledgements are what is checked.

    Args:
        bus: the app's :class:`~eventray.platform.runtime.bus.CommandBus` (``rt.command_bus()``).
        retry_s: pause before a resend.
    """

    def __init__(self, bus: Any, *, retry_s: float = 0.2) -> None:
        self.bus = bus
        self.acked: dict[str, Acked] = {}
        self.retries = 0
        self._retry_s = retry_s

    async def send(self, command: Any, deadline: float) -> bool:
        """Send ``command`` until acknowledged (True) or ``deadline`` (monotonic) passed (False).

        Raises:
            RuntimeError: the command was refused for good (a domain error, an invalid command).
        """
        while True:
            outcome = await self.bus.send(command)
            if outcome.ok:
                told = len(outcome.events) if (outcome.events or not outcome.duplicate) else None
                self.acked[command.command_id] = Acked(outcome.aggregate_id, outcome.version, told)
                return True
            if not isinstance(outcome.error, Retryable):
                raise RuntimeError(f"{command.command_id}: {outcome.error_type}: {outcome.error_message}")
            if time.monotonic() > deadline:
                return False
            self.retries += 1
            await asyncio.sleep(self._retry_s)


@dataclass(frozen=True)
class Ingress:
    """The app's GraphQL ingress on the stack: what a workload sends to and ``kill-replica`` kills.

    Attributes:
        url: the GraphQL endpoint.
        health_url: its ``/healthz``.
        verify: what httpx verifies the ingress's certificate with.
        app_name: the Serve application.
        deployment: the ingress deployment's name.
    """

    url: str
    health_url: str
    verify: Any
    app_name: str
    deployment: str = "GraphQLIngress"


def ingress_of(rt: Any) -> Ingress:
    """The GraphQL ingress of the app of ``rt`` on this stack, as this environment's
    ServingSettings place it (URL, Serve application, TLS)."""
    from eventray.serving.deployment import ingress_verify
    from eventray.serving.settings import ServingSettings

    serving = ServingSettings().for_app(rt)
    return Ingress(url=f"{serving.base_url}/graphql", health_url=f"{serving.base_url}/healthz",
                   verify=ingress_verify(rt.settings, serving), app_name=serving.app_name)


#: the GraphQL error codes a client retries with the same ids (``serving.api.errors``)
RETRYABLE_CODES = frozenset({"RETRYABLE"})
_RESULT = ("__typename ... on CommandSuccess { commandId aggregateId version duplicate events { type } } "
           "... on CommandError { code message commandId }")
_SUBMIT = f"mutation ChaosSubmit($c: [CommandInput!]!) {{ submitCommands(commands: $c) {{ {_RESULT} }} }}"


class GraphQLSender:
    """Sends commands as a user's client does: ``submitCommands`` over HTTP(S) to the app's GraphQL
    ingress, each command resent with its own ``commandId`` until acknowledged. A connection
    refused or cut, a timeout, a 5xx or 429 answer, a ``RetryableError`` result or a ``RETRYABLE``
    error resend what is not acknowledged yet; any other answer is a bug of the workload or the
    platform and raises.

    Args:
        ingress: where the ingress answers.
        tokens: bearer tokens allowed to send the commands, taken in turn (several subjects stay
            under the ingress's per-subject rate limits, as several users would).
        acked: the dict acknowledgements go in (share one with a :class:`CommandSender`, so that
            every command the workload sent is checked together).
        retry_s: pause before a resend.
        timeout_s: how long one request may take.
        transport: an httpx transport in place of the network (tests).
    """

    def __init__(self, ingress: Ingress, tokens: list[str], *, acked: dict[str, Acked] | None = None,
                 retry_s: float = 0.2, timeout_s: float = 30.0, transport: Any = None) -> None:
        import itertools

        import httpx

        if not tokens:
            raise ValueError("GraphQLSender needs at least one token")
        self.ingress = ingress
        self.acked: dict[str, Acked] = acked if acked is not None else {}
        self.retries = 0
        self._retry_s = retry_s
        self._tokens = itertools.cycle(tokens)
        self.http = httpx.AsyncClient(verify=ingress.verify, timeout=timeout_s, transport=transport)

    async def post(self, query: str, variables: dict[str, Any], operation: str) -> dict[str, Any] | None:
        """One GraphQL request; its JSON body, or ``None`` when it should be sent again."""
        import httpx

        try:
            r = await self.http.post(self.ingress.url, json={"query": query, "variables": variables,
                                                             "operationName": operation},
                                     headers={"Authorization": f"Bearer {next(self._tokens)}"})
        except httpx.HTTPError as e:  # refused, reset, timed out: the replica may be restarting
            log.debug("%s not answered: %s", operation, e)
            return None
        if r.status_code == 429 or r.status_code >= 500:
            return None
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            return None
        if body.get("data") is None:
            codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors") or ()}
            if codes and codes <= RETRYABLE_CODES:
                return None
            raise RuntimeError(f"{operation}: HTTP {r.status_code}: {body.get('errors')}")
        return body

    async def send(self, commands: list[tuple[str, str, dict[str, Any]]], deadline: float) -> list[bool]:
        """Send ``(command_id, mutation name, input)`` commands in one ``submitCommands`` until each
        is acknowledged (True) or ``deadline`` (monotonic) passed (False); the input carries the
        ``commandId``.

        Raises:
            RuntimeError: a command was refused for good (a domain error, an invalid command).
        """
        pending = {cid: (name, payload) for cid, name, payload in commands}
        while pending:
            ids = list(pending)
            body = await self.post(_SUBMIT, {"c": [{pending[i][0]: pending[i][1]} for i in ids]}, "ChaosSubmit")
            if body is not None:
                for cid, res in zip(ids, body["data"]["submitCommands"], strict=True):
                    kind = res["__typename"]
                    if kind == "CommandSuccess":
                        told = len(res["events"]) if (res["events"] or not res["duplicate"]) else None
                        self.acked[cid] = Acked(res["aggregateId"], int(res["version"]), told)
                        del pending[cid]
                    elif kind != "RetryableError":
                        raise RuntimeError(f"{cid}: {kind} {res.get('code')}: {res.get('message')}")
            if pending:
                if time.monotonic() > deadline:
                    break
                self.retries += 1
                await asyncio.sleep(self._retry_s)
        return [cid not in pending for cid, _, _ in commands]

    async def close(self) -> None:
        await self.http.aclose()


def load_workload(rt: Any) -> WorkloadFactory:
    """The workload factory ``rt.app.chaos`` names.

    Raises:
        ConfigurationError: the app declares none, or it is not callable.
        AppNotFound: the path does not import.
    """
    from eventray.platform.app import _import_attr

    path = rt.app.chaos
    if path is None:
        raise ConfigurationError(f"app {rt.app.name} declares no chaos workload: set App(chaos='module:attr')")
    factory = _import_attr(path, what="chaos workload")
    if not callable(factory):
        raise ConfigurationError(f"{path} is a {type(factory).__name__}, not a workload factory "
                                 "workload(rt, tag, rng, saga_settings)")
    return factory  # type: ignore[no-any-return]


def stack_preparation(rt: Any) -> Callable[[Any], None] | None:
    """``prepare(rt)`` from the module of the app's workload factory, when it defines one."""
    if rt.app.chaos is None:
        return None
    load_workload(rt)  # the same messages when the path is wrong
    module = importlib.import_module(rt.app.chaos.partition(":")[0])
    return getattr(module, "prepare", None)


# --------------------------------------------------------------------------- the faults


@dataclass(frozen=True)
class Targets:
    """What the actor faults aim at: the app's topic, the workload's projection version and saga."""

    topic: str
    projection: str | None = None
    version: int | None = None
    saga: str | None = None
    #: the GraphQL ingress the workload sends through (``kill-replica``); ``None``: it uses the bus
    ingress: Ingress | None = None


def _targets(rt: Any, work: Workload) -> Targets:
    version = None
    if work.projection is not None:
        from eventray.platform.projections.store import ProjectionStore

        store = ProjectionStore(rt.settings.dsn)
        try:
            version = store.current_version(work.projection)
        finally:
            store.close()
    return Targets(rt.topic, work.projection, version, work.saga, getattr(work, "ingress", None))


def available_kinds(settings: Settings, targets: Targets) -> tuple[list[str], dict[str, str]]:
    """The fault kinds this stack supports now, and why the others are skipped."""
    from eventray.platform.projections.host import applying_group
    from eventray.platform.sagas.composition import coordinator_group

    faults.connect(settings)
    skipped: dict[str, str] = {}
    if targets.saga is None:
        skipped["kill-coordinator"] = "the workload drives no saga"
    elif not coordinator_group(targets.topic, targets.saga).live():
        skipped["kill-coordinator"] = f"no {targets.saga} coordinators run on this topic"
    if targets.projection is None:
        skipped["kill-runner"] = "the workload reads no projection"
    elif targets.version is None:
        skipped["kill-runner"] = f"projection {targets.projection} has no current version"
    elif applying_group(targets.topic, targets.projection, targets.version) is None:
        skipped["kill-runner"] = f"no {targets.projection} runners run on this topic"
    if targets.ingress is None:
        skipped["kill-replica"] = "the workload sends through the command bus, not the GraphQL ingress"
    why = skipped.get("kill-runner") or faults.oom_available()
    if why:
        skipped["oom-runner"] = why
    why = faults.delay_available(settings)
    if why:
        skipped["delay-kafka"] = why
    if not settings.kafka_delay_proxy:
        skipped.update({k: "the broker runs behind no Toxiproxy (EVENTRAY_KAFKA_DELAY_PROXY)" for k in PROXY_KINDS})
    if not settings.postgres_proxy:
        skipped["partition-postgres"] = "PostgreSQL runs behind no Toxiproxy (EVENTRAY_POSTGRES_PROXY)"
    why = faults.disk_full_available(settings)
    if why:
        skipped.update({k: why for k in ("disk-full-kafka", "disk-full-postgres")})
    return [k for k in KINDS if k not in skipped], skipped


def inject(settings: Settings, kind: str, rng: random.Random, targets: Targets) -> faults.FaultResult:
    """One fault of ``kind`` with parameters drawn from ``rng``."""
    if kind == "kill-shard":
        return faults.kill_shard(settings, topic=targets.topic, rng=rng)
    if kind == "kill-runner" and targets.projection is not None:
        return faults.kill_runner(settings, targets.projection, topic=targets.topic, version=targets.version,
                                  rng=rng)
    if kind == "oom-runner" and targets.projection is not None:
        return faults.oom_runner(settings, targets.projection, topic=targets.topic, version=targets.version,
                                 rng=rng)
    if kind == "kill-coordinator" and targets.saga is not None:
        return faults.kill_coordinator(settings, targets.saga, topic=targets.topic, rng=rng)
    if kind == "pause-kafka":
        return faults.pause_kafka(settings, rng.uniform(1.0, 5.0))
    if kind == "restart-kafka":
        return faults.restart_kafka(settings)
    if kind == "restart-postgres":
        return faults.restart_postgres(settings)
    if kind == "delay-kafka":
        return faults.delay_kafka(settings, rng.choice((50, 200, 500)), rng.uniform(2.0, 6.0))
    if kind == "reset-kafka":
        return faults.reset_kafka(settings, rng.uniform(2.0, 6.0))
    if kind == "outage-postgres":
        return faults.outage_postgres(settings, rng.uniform(5.0, 15.0))
    if kind == "starve-shard":
        return faults.starve_shard(settings, rng.uniform(3.0, 8.0), topic=targets.topic, share=0.1, rng=rng)
    if kind == "loss-kafka":
        return faults.loss_kafka(settings, rng.uniform(4.0, 10.0), rng.choice((0.3, 0.6, 1.0)))
    if kind == "partition-postgres":
        return faults.partition_postgres(settings, rng.uniform(5.0, 15.0))
    if kind == "disk-full-kafka":
        return faults.disk_full_kafka(settings, rng.uniform(3.0, 8.0))
    if kind == "disk-full-postgres":
        return faults.disk_full_postgres(settings, rng.uniform(3.0, 8.0))
    if kind == "kill-replica" and targets.ingress is not None:
        i = targets.ingress
        return faults.kill_replica(settings, app_name=i.app_name, deployment=i.deployment, health_url=i.health_url,
                                   verify=i.verify, rng=rng)
    raise ValueError(f"cannot inject {kind!r} at {targets}; known kinds: {', '.join(KINDS)}")


# --------------------------------------------------------------------------- the platform's invariant


def check_log(records: Mapping[str, list[tuple[str, int, str]]],
              acked: Mapping[str, Acked]) -> tuple[list[str], list[str]]:
    """Lost and duplicated command ids, from each command's committed records.

    Args:
        records: command id -> ``(aggregate id, version, event id)`` of each committed record.
        acked: the acknowledged commands.
    """
    lost, twice = set(), set()
    for cid, recs in records.items():
        versions = sorted(v for _, v, _ in recs)
        aggregates = {a for a, _, _ in recs}
        # one decision writes consecutive versions of one aggregate, each event once
        if (len({e for _, _, e in recs}) < len(recs) or len(aggregates) > 1
                or versions != list(range(versions[0], versions[0] + len(versions)))):
            twice.add(cid)
        ack = acked.get(cid)
        if ack is None:
            continue
        if (ack.events is not None and len(recs) > ack.events) or versions[-1] > ack.version:
            twice.add(cid)
        if (ack.aggregate_id not in aggregates or versions[-1] < ack.version
                or (ack.events is not None and len(recs) < ack.events)):
            lost.add(cid)
    lost.update(c for c, a in acked.items() if c not in records and a.events != 0)
    return sorted(lost), sorted(twice)


def _committed_records(rt: Any, tag: str) -> dict[str, list[tuple[str, int, str]]]:
    """Command id -> committed records of the aggregates whose ids start with ``tag``."""
    out: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    for p in range(rt.settings.partitions):
        for record in rt.read_decoded(p, 0):
            env = getattr(record, "envelope", None)  # an undecodable record has none
            if env is None or env.command_id is None or not env.aggregate_id.startswith(tag):
                continue
            out[env.command_id].append((env.aggregate_id, env.version, env.event_id))
    return out


def projection_caught_up(rt: Any, name: str, timeout_s: float) -> int | None:
    """Wait until the current version of projection ``name`` stored offsets at the log's end;
    that version (``None`` when it has none). Gives up, with a warning, after ``timeout_s``."""
    from eventray.platform.projections.replay import LogEnds
    from eventray.platform.projections.store import ProjectionStore

    store = ProjectionStore(rt.settings.dsn)
    ends = LogEnds(rt.settings.kafka_address, rt.topic, rt.settings.partitions, tls=rt.settings.tls_files())
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            version = store.current_version(name)
            heads = ends()
            offsets = store.load_offsets(name, version) if version is not None else {}
            if version is not None and all(offsets.get(p, 0) >= h for p, h in heads.items()):
                return version
            if time.monotonic() > deadline:
                log.warning("%s did not catch up in %.0fs: %s vs %s", name, timeout_s, offsets, heads)
                return version
            time.sleep(0.5)
    finally:
        ends.close()
        store.close()


# --------------------------------------------------------------------------- the run


async def _sample_acks(work: Workload, report: MonkeyReport, stop: asyncio.Event) -> None:
    """Every 50 ms, note when the workload had new acknowledgements (for availability and gaps)."""
    seen = len(work.acked)
    while not stop.is_set():
        await asyncio.sleep(0.05)
        if len(work.acked) > seen:
            seen = len(work.acked)
            report.ack_times.append(time.monotonic())


async def _next_ack(work: Workload, began: float) -> float | None:
    """Seconds from ``began`` until the workload's next new acknowledgement (None after the wait)."""
    seen, deadline = len(work.acked), time.monotonic() + FLOWING_WAIT_S
    while len(work.acked) == seen:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def _run(rt: Any, settings: Settings, factory: WorkloadFactory, *, duration_s: float, seed: int,
               report: MonkeyReport, out: Any) -> None:
    from eventray.platform.sagas.settings import SagaSettings

    faults.connect(settings, runtime_env=rt.job_env())  # this stack's own Ray, able to import the app
    rng = random.Random(seed)
    tag = f"monkey{seed}x{int(time.time())}"
    work = factory(rt, tag, random.Random(seed + 1), SagaSettings())
    await work.setup(time.monotonic() + 120)  # first: it decides the path (``ingress``) the faults aim at too
    targets = await asyncio.to_thread(_targets, rt, work)
    kinds, report.skipped_kinds = await asyncio.to_thread(available_kinds, settings, targets)
    stop = asyncio.Event()
    t_end = time.monotonic() + duration_s
    hard = t_end + 180
    workers = [asyncio.create_task(work.worker(stop, hard)) for _ in range(WORKERS)]
    report.span = (time.monotonic(), t_end)
    sampler = asyncio.create_task(_sample_acks(work, report, stop))
    # one fault at a time, every fault kind once before any repeats, with a pause between
    order: list[str] = []
    while time.monotonic() < t_end - 3:
        if not order:
            order = kinds[:]
            rng.shuffle(order)
        kind = order.pop()
        try:
            began, before = time.monotonic(), len(work.acked)
            result = await asyncio.to_thread(inject, settings, kind, rng, targets)
            during = len(work.acked) - before
            flowing = await _next_ack(work, began)
            report.faults.append(result)
            report.flowing.append(flowing)
            report.windows.append((kind, began, began + (flowing if flowing is not None else FLOWING_WAIT_S)))
            out(f"  {kind:18s} {result.target}: back after {result.recovered_s:.2f}s, {during} commands "
                f"acknowledged during it, next after "
                + (f"{flowing:.2f}s " if flowing is not None else "none yet ") + result.detail)
        except Exception as e:  # noqa: BLE001 - reported: a fault that could not be injected or healed
            report.fault_errors.append(f"{kind}: {type(e).__name__}: {e}")
            out(f"  {kind:18s} FAILED: {e}")
        await asyncio.sleep(min(max(0.0, t_end - time.monotonic()), rng.uniform(1.0, 4.0)))
    report.span = (report.span[0], time.monotonic())
    stop.set()
    await asyncio.gather(*workers, sampler)
    report.acked, report.retries = len(work.acked), work.retries
    records = await asyncio.to_thread(_committed_records, rt, tag)
    report.lost, report.duplicated = check_log(records, work.acked)
    await work.check(report)


def run(rt: Any, settings: Settings, *, duration_s: float, seed: int, out: Any = print) -> MonkeyReport:
    """Run the monkey with the workload of ``rt.app`` against the stack of ``settings``.

    Args:
        rt: the app's :class:`~eventray.platform.composition.Runtime`, with the stack's
            effective settings (``eventray.platform.cli.load_runtime``).
        settings: the stack's *configured* settings: faults refuse what that stack did not start.
        duration_s: seconds of faults.
        seed: seeds the fault schedule (and, plus one, the workload).
        out: where progress and the report go.

    Raises:
        ConfigurationError: the app declares no chaos workload.
    """
    factory = load_workload(rt)  # refuse before touching the stack
    report = MonkeyReport()
    out(f"chaos monkey: {duration_s:.0f}s, seed {seed}, app {rt.app.name}, stack {settings.home}")
    asyncio.run(_run(rt, settings, factory, duration_s=duration_s, seed=seed, report=report, out=out))
    out(report.render())
    return report
