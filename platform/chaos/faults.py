"""Faults injected into a local dev stack, each refusing anything that stack did not start.

Every fault takes the *configured* settings of a stack (``EVENTRAY_HOME`` and ports); a fault on
an actor also takes the app's event topic (``Runtime.topic``) and, for runners and coordinators,
the projection or saga whose actors it kills, so nothing here names a domain. Each fault:

* acts only on processes the stack started: the broker of its own pid file, the PostgreSQL
  cluster of its own state file, and Ray actors whose process descends from its own Ray head
  (found by the head's temp directory); a piece with a configured external address is refused;
* waits until the system answers again and reports how long that took (``recovered_s``).

Kafka is paused with SIGSTOP/SIGCONT; delayed with tc netem on the host end of the veth pair
of the stack's own broker namespace (``EVENTRAY_KAFKA_NETNS_IP``, root, see
:mod:`eventray.platform.devstack.netns`), or, on kernels without netem, with a latency toxic
on the stack's own Toxiproxy in front of the broker (``EVENTRAY_KAFKA_DELAY_PROXY``, see
:mod:`eventray.platform.devstack.toxiproxy`).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventray.platform.devstack import _proc, certs, kafka, netns, postgres, rayhead, smallfs, toxiproxy
from eventray.platform.devstack.state import effective_settings
from eventray.platform.errors import ConfigurationError, StackError
from eventray.platform.runtime.actors import NAMESPACE
from eventray.platform.settings import Settings, with_postgres_tls

__all__ = ["NAMESPACE", "FaultResult", "connect", "delay_available", "delay_kafka", "disk_full_available",
           "disk_full_kafka", "disk_full_postgres", "kill_coordinator",
           "kill_replica", "kill_runner", "kill_shard", "oom_available", "oom_runner", "loss_kafka", "outage_postgres", "partition_postgres",
           "pause_kafka", "reset_kafka",
           "restart_kafka", "restart_postgres", "starve_shard"]

log = logging.getLogger("eventray.chaos")


@dataclass(frozen=True)
class FaultResult:
    """What a fault did: its kind, its target, and seconds until the target answered again."""

    kind: str
    target: str
    recovered_s: float
    detail: str = ""


# --------------------------------------------------------------------------- ownership


def _stack_pids(settings: Settings) -> set[int]:
    """Every process of this stack's Ray head (the head's processes name its temp dir)."""
    if settings.ray_address:
        raise StackError("this stack's Ray is external (EVENTRAY_RAY_ADDRESS is set); chaos only acts on a "
                         "Ray head that `eventray dev up` started")
    roots = _proc.pids_matching(str(rayhead.temp_dir(settings)))
    if not roots:
        raise StackError(f"no Ray head of this stack runs (temp dir {rayhead.temp_dir(settings)}); "
                         "start it with `eventray dev up`")
    return set(_proc.with_descendants(roots))


def connect(settings: Settings, *, runtime_env: dict[str, Any] | None = None) -> None:
    """Join this stack's own Ray head (refusing any other) as a driver.

    Args:
        settings: the stack's configured settings.
        runtime_env: the app's Ray runtime env (``Runtime.job_env()``), for a driver that runs
            the app's code on the workers; the first join of a process decides it.
    """
    from eventray.platform import composition

    _stack_pids(settings)  # refuse before connecting anywhere
    composition.connect_ray(effective_settings(settings), runtime_env=runtime_env)


def _kill_actor(settings: Settings, name: str, kind: str, wait_ready: Callable[[Any], Any],
                how: Callable[[int], str] | None = None) -> FaultResult:
    """SIGKILL the process of a named actor of this stack (or end it ``how(pid) -> detail`` says);
    Ray restarts it; wait until ready."""
    import ray

    connect(settings)
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError as e:
        raise StackError(f"no actor named {name!r} in namespace {NAMESPACE!r} on this stack") from e
    answer: Any = ray.get(handle.pid.remote(), timeout=60)
    pid = int(answer)
    if pid not in _stack_pids(settings):
        raise StackError(f"actor {name} runs as pid {pid}, which this stack's Ray head did not start; refusing")
    t0 = time.monotonic()
    if how is None:
        os.kill(pid, signal.SIGKILL)
        detail = f"pid {pid} killed"
    else:
        detail = how(pid)
    deadline = t0 + 180
    while True:
        try:
            wait_ready(handle)
            if int(ray.get(handle.pid.remote(), timeout=30)) != pid:
                break
        except Exception as e:  # noqa: BLE001 - restarting; ask again
            log.debug("%s not back yet: %s", name, e)
        if time.monotonic() > deadline:
            raise StackError(f"{name} did not come back within 180s after being killed")
        time.sleep(0.2)
    return FaultResult(kind, name, time.monotonic() - t0, detail)


def _named(prefix: str) -> list[str]:
    """Live actor names of the eventray namespace that start with ``prefix``, sorted."""
    from eventray.platform.runtime.actors import live_names

    return sorted(n for n in live_names() if n.startswith(prefix))


def _pick(group: Any, index: int | None, rng: random.Random | None, missing: str) -> str:
    """Actor ``index`` of an :class:`~eventray.platform.runtime.actors.ActorGroup`, or a random live one."""
    live = group.live()
    if not live:
        raise StackError(missing)
    if index is None:
        return str((rng or random).choice(sorted(live.values())))
    if index not in live:
        raise StackError(f"no {group.what} {group.name(index)} runs on this stack; live: {sorted(live)}")
    return str(live[index])


# --------------------------------------------------------------------------- the faults


def kill_shard(settings: Settings, index: int | None = None, *, topic: str,
               rng: random.Random | None = None) -> FaultResult:
    """Kill shard actor ``index`` of ``topic`` (a random one when omitted); wait until it recovered.

    Args:
        settings: the stack's configured settings.
        index: the shard's index; ``None`` picks one with ``rng``.
        topic: the app's event topic (``Runtime.topic``).
        rng: where a random choice comes from.
    """
    import ray

    from eventray.platform.runtime.shards import shard_group

    connect(settings)
    name = _pick(shard_group(topic), index, rng, f"no shard actors of topic {topic!r} run on this stack")
    return _kill_actor(settings, name, "kill-shard", lambda h: ray.get(h.ready.remote(), timeout=60))


def kill_runner(settings: Settings, name: str, *, topic: str, version: int | None = None,
                rng: random.Random | None = None) -> FaultResult:
    """Kill a projection runner or host: an actor name, or a projection name (a random one applying it).

    Args:
        settings: the stack's configured settings.
        name: ``projection:...`` (one runner actor), or the projection's name.
        topic: the app's event topic (``Runtime.topic``).
        version: only the runners of this version of the projection; ``None``: any version's.
        rng: where a random choice comes from.
    """
    return _kill_actor(settings, _runner_actor(settings, name, topic, version, rng), "kill-runner", _runner_ready)


def _runner_actor(settings: Settings, name: str, topic: str, version: int | None, rng: random.Random | None) -> str:
    """The runner or host actor ``name`` means (see :func:`kill_runner`)."""
    from eventray.platform.projections.host import applying_group, hosting_group
    from eventray.platform.runtime.actors import group_prefix

    connect(settings)
    missing = f"no runner of projection {name!r} on topic {topic!r} runs on this stack"
    if name.startswith("projection:"):
        return name
    if version is not None:
        group = applying_group(topic, name, version)
        if group is None:
            raise StackError(missing + f" (version {version})")
        return _pick(group, None, rng, missing + f" (version {version})")
    # any version: the runner names of every version share this prefix
    candidates = _named(group_prefix("projection", topic, name))
    hosts = None if candidates else hosting_group(topic, name)
    if hosts is not None:  # no replay is building it: its host applies it
        candidates = sorted(hosts.live().values())
    if not candidates:
        raise StackError(missing)
    return (rng or random).choice(candidates)


def _runner_ready(h: Any) -> None:
    import ray

    d = ray.get(h.describe.remote(), timeout=30)
    if not d.get("running"):
        raise RuntimeError("runner not running yet")


#: where the kernel's cgroup v1 memory controller is mounted (oom-runner)
MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")


def oom_available() -> str | None:
    """None when oom-runner can run here (root, a writable cgroup v1 memory controller), else why not."""
    if not _proc.is_root():
        return "oom-runner puts a process in a memory cgroup of its own, which needs root"
    if not (MEMORY_CGROUPS / "cgroup.procs").exists():
        return f"no cgroup v1 memory controller at {MEMORY_CGROUPS}"
    return None


def oom_runner(settings: Settings, name: str, *, topic: str, version: int | None = None,
               limit_mb: int = 32, rng: random.Random | None = None) -> FaultResult:
    """Drive a projection runner or host past a memory limit until the kernel kills it (OOM);
    Ray restarts it; wait until it runs again.

    The process moves into a memory cgroup of its own (under its current one) that may charge
    ``limit_mb`` MiB of new pages (what it held stays charged where it was: kernels since 6.x
    move no charges). The fault then drives it past that: the actor allocates and touches
    twice as much (``hold_memory``), as a leak would, and the kernel's OOM killer ends it.
    """
    import ray

    why = oom_available()
    if why:
        raise StackError(why)
    actor = _runner_actor(settings, name, topic, version, rng)

    def past_the_limit(pid: int) -> str:
        handle = ray.get_actor(actor, namespace=NAMESPACE)
        parent = _memory_cgroup(pid)
        cg = parent / f"eventray-chaos-oom-{pid}"
        cg.mkdir(exist_ok=True)
        try:
            (cg / "memory.limit_in_bytes").write_text(str(limit_mb << 20))
            (cg / "cgroup.procs").write_text(str(pid))
            try:
                answer: Any = ray.get(handle.hold_memory.remote(2 * limit_mb), timeout=60)
            except Exception as e:  # noqa: BLE001 - the actor died under the call: the point
                log.debug("%s died holding memory: %s", actor, e)
            else:
                (cg / "memory.limit_in_bytes").write_text("-1")
                (parent / "cgroup.procs").write_text(str(pid))
                raise StackError(f"pid {pid} held {int(answer) >> 20} MiB past a {limit_mb} MiB limit and lives; "
                                 "is the memory controller enforcing limits here?")
            deadline = time.monotonic() + 30
            while _proc.pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            return f"pid {pid} OOM-killed past {limit_mb} MiB of new memory"
        finally:
            _rmdir_when_empty(cg)

    return _kill_actor(settings, actor, "oom-runner", _runner_ready, how=past_the_limit)


def _memory_cgroup(pid: int) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return MEMORY_CGROUPS / path.lstrip("/")
    raise StackError(f"pid {pid} is in no cgroup v1 memory hierarchy")


def _rmdir_when_empty(cg: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cg.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # the killed process is still being reaped
            if time.monotonic() > deadline:
                log.warning("could not remove the cgroup %s", cg)
                return
            time.sleep(0.1)



def kill_coordinator(settings: Settings, saga: str, index: int | None = None, *, topic: str,
                     rng: random.Random | None = None) -> FaultResult:
    """Kill a coordinator of ``saga`` (a random one when ``index`` is omitted); wait until it recovered.

    Args:
        settings: the stack's configured settings.
        saga: the saga's name (``App.sagas``).
        index: the coordinator's index; ``None`` picks one with ``rng``.
        topic: the app's event topic (``Runtime.topic``).
        rng: where a random choice comes from.
    """
    import ray

    from eventray.platform.sagas.composition import coordinator_group

    connect(settings)
    name = _pick(coordinator_group(topic, saga), index, rng,
                 f"no {saga} coordinators of topic {topic!r} run on this stack")
    return _kill_actor(settings, name, "kill-coordinator", lambda h: ray.get(h.ready.remote(), timeout=60))


def _our_broker(settings: Settings) -> int:
    if settings.kafka_bootstrap:
        raise StackError("this stack's Kafka is external (EVENTRAY_KAFKA_BOOTSTRAP is set); refusing")
    piece = kafka.status(settings)
    config = str(settings.home / "run" / "kafka.properties")
    if piece.state != "running" or piece.pid is None or config not in _proc.cmdline(piece.pid):
        raise StackError(f"no broker started by this stack runs (home {settings.home}); refusing")
    return piece.pid


def _wait_kafka(settings: Settings, t0: float, timeout_s: float = kafka.START_TIMEOUT_S) -> float:
    tls = certs.admin_tls(settings)
    _proc.wait_until(lambda: kafka.ready(settings.kafka_address, tls, probe_port=kafka.listen_port(settings)),
                     timeout=timeout_s,
                     what=f"Kafka at {settings.kafka_address}", interval=0.2)
    return time.monotonic() - t0


def pause_kafka(settings: Settings, seconds: float) -> FaultResult:
    """SIGSTOP the broker for ``seconds``, SIGCONT it, wait until it answers."""
    pid = _our_broker(settings)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    t0 = time.monotonic()
    return FaultResult("pause-kafka", f"broker pid {pid}", _wait_kafka(settings, t0), f"paused {seconds:.1f}s")


def restart_kafka(settings: Settings) -> FaultResult:
    """Stop the broker (SIGTERM, clean shutdown) and start it again; wait until it answers."""
    pid = _our_broker(settings)
    t0 = time.monotonic()
    kafka.stop(settings)
    kafka.start(settings)
    return FaultResult("restart-kafka", f"broker pid {pid}", _wait_kafka(settings, t0))


def outage_postgres(settings: Settings, seconds: float = 60.0) -> FaultResult:
    """Stop PostgreSQL (fast shutdown) for ``seconds``, then start it and wait until it answers.

    Kafka is the source of truth: commands go on being acknowledged while snapshots and read
    models wait, then catch up (the monkey counts the acknowledgements during the fault).
    """
    piece = _our_postgres(settings)
    postgres.stop(settings)
    try:
        time.sleep(seconds)
    finally:
        started = postgres.start(settings)
    t0 = time.monotonic()
    dsn = with_postgres_tls(started.address or "", certs.admin_tls(settings))
    _proc.wait_until(lambda: postgres.ready(dsn), timeout=60, what="PostgreSQL", interval=0.2)
    return FaultResult("outage-postgres", f"postgres pid {piece.pid}", time.monotonic() - t0,
                       f"down for {seconds:.0f}s")


def partition_postgres(settings: Settings, seconds: float = 10.0) -> FaultResult:
    """Cut every client connection to PostgreSQL and refuse new ones for ``seconds`` (the stack's
    own Toxiproxy in front of it, disabled), then let them through and wait until it answers
    through the proxy. The server runs on: a network partition, not an outage."""
    piece = _our_postgres(settings)
    if not settings.postgres_proxy:
        raise StackError("partition-postgres needs the stack's PostgreSQL behind its Toxiproxy "
                         "(EVENTRAY_POSTGRES_PROXY=1, as the chaos stack runs it)")
    toxiproxy.set_enabled(settings, False, proxy=toxiproxy.POSTGRES)
    try:
        time.sleep(seconds)
    finally:
        toxiproxy.set_enabled(settings, True, proxy=toxiproxy.POSTGRES)
    t0 = time.monotonic()
    dsn = with_postgres_tls(effective_settings(settings).dsn, certs.admin_tls(settings))
    _proc.wait_until(lambda: postgres.ready(dsn), timeout=60, what="PostgreSQL through its proxy", interval=0.2)
    return FaultResult("partition-postgres", f"toxiproxy :{toxiproxy.postgres_proxy_port(settings)} "
                       f"(postgres pid {piece.pid})", time.monotonic() - t0, f"cut for {seconds:.1f}s")


def _full_for(settings: Settings, path: Any, seconds: float) -> int:
    """Keep this stack's small filesystem at ``path`` full for ``seconds``; the ballast's size."""
    ballast, size = smallfs.fill(settings, path)
    try:
        time.sleep(seconds)
    finally:
        smallfs.free(ballast)
    return size


def disk_full_kafka(settings: Settings, seconds: float = 10.0) -> FaultResult:
    """Fill the broker's log directory (the stack's own small filesystem, ``EVENTRAY_DATA_FS_MB``)
    for ``seconds``, then free it; a broker that shut down on the full disk (Kafka stops when its
    only log directory fails) is started again. Waits until it answers.

    Meanwhile a command is acknowledged only once its transaction committed; one that cannot
    commit gets a retryable answer.
    """
    pid = _our_broker(settings)
    data = settings.data_dir / "kafka"
    size = _full_for(settings, data, seconds)
    t0 = time.monotonic()
    died = kafka.status(settings).state != "running"
    if died:
        kafka.start(settings)
    return FaultResult("disk-full-kafka", f"broker pid {pid} ({data})", _wait_kafka(settings, t0),
                       f"{size >> 20} MiB ballast for {seconds:.1f}s"
                       + ("; the broker shut down and was started again" if died else "; the broker ran on"))


def disk_full_postgres(settings: Settings, seconds: float = 10.0) -> FaultResult:
    """Fill PostgreSQL's data directory (the stack's own small filesystem, ``EVENTRAY_DATA_FS_MB``)
    for ``seconds``, then free it; a server that stopped on the full disk (a WAL write that
    cannot be made is a PANIC) is started again. Waits until it answers.

    Kafka is the source of truth: commands go on; snapshots and read-model batches fail and are
    retried, then catch up.
    """
    from eventray.platform.devstack.state import StackState

    piece = _our_postgres(settings)
    cdir = postgres.cluster_dir(settings, StackState.load(settings.home))
    size = _full_for(settings, cdir, seconds)
    t0 = time.monotonic()
    died = postgres.status(settings).state != "running"
    started = postgres.start(settings)
    dsn = with_postgres_tls(started.address or "", certs.admin_tls(settings))
    _proc.wait_until(lambda: postgres.ready(dsn), timeout=60, what="PostgreSQL", interval=0.2)
    return FaultResult("disk-full-postgres", f"postgres pid {piece.pid} ({cdir})", time.monotonic() - t0,
                       f"{size >> 20} MiB ballast for {seconds:.1f}s"
                       + ("; the server stopped and was started again" if died else "; the server ran on"))


def disk_full_available(settings: Settings) -> str | None:
    """None when the disk-full faults can run on this stack, else why not."""
    if not settings.data_fs_mb:
        return "the stack's data is on no small filesystem of its own (EVENTRAY_DATA_FS_MB, root)"
    if not smallfs.is_ours(settings, settings.data_dir / "kafka"):
        return f"{settings.data_dir / 'kafka'} is not on this stack's small filesystem (started before the setting?)"
    return None


def _our_postgres(settings: Settings) -> Any:
    if settings.database_url:
        raise StackError("this stack's PostgreSQL is external (EVENTRAY_DATABASE_URL is set); refusing")
    piece = postgres.status(settings)
    if piece.state != "running":
        raise StackError(f"no PostgreSQL started by this stack runs (home {settings.home}); refusing")
    return piece


def starve_shard(settings: Settings, seconds: float = 10.0, index: int | None = None, *, topic: str,
                 share: float = 0.1, rng: random.Random | None = None) -> FaultResult:
    """Starve shard actor ``index`` of ``topic`` (random when omitted) of CPU for ``seconds``:
    SIGSTOP/SIGCONT bursts that let it run ``share`` of each 100 ms; then wait until it answers.
    """
    import ray

    from eventray.platform.runtime.shards import shard_group

    if not 0.0 < share < 1.0:
        raise ConfigurationError(f"starve-shard lets the shard run a share of the time in (0, 1), not {share}")
    connect(settings)
    name = _pick(shard_group(topic), index, rng, f"no shard actors of topic {topic!r} run on this stack")
    handle = ray.get_actor(name, namespace=NAMESPACE)
    answer: Any = ray.get(handle.pid.remote(), timeout=60)
    pid = int(answer)
    if pid not in _stack_pids(settings):
        raise StackError(f"actor {name} runs as pid {pid}, which this stack's Ray head did not start; refusing")
    period, end = 0.1, time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(period * (1 - share))
            os.kill(pid, signal.SIGCONT)
            time.sleep(period * share)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    t0 = time.monotonic()
    ray.get(handle.ready.remote(), timeout=120)
    return FaultResult("starve-shard", name, time.monotonic() - t0,
                       f"pid {pid} ran {share:.0%} of the time for {seconds:.0f}s")


def kill_replica(settings: Settings, *, app_name: str, deployment: str, health_url: str,
                 verify: Any = True, rng: random.Random | None = None) -> FaultResult:
    """SIGKILL a Serve replica of ``deployment`` in the Serve application ``app_name`` (a random
    one when several run); wait until Serve started another and ``health_url`` answers 200.

    Args:
        settings: the stack's configured settings.
        app_name: the Serve application (``ServingSettings.app_name``).
        deployment: the deployment's name (the GraphQL ingress is ``GraphQLIngress``).
        health_url: the ingress's ``/healthz`` through Serve's proxy.
        verify: what httpx verifies the ingress's certificate with.
        rng: where a random choice comes from.
    """
    import httpx

    mark = f"ServeReplica:{app_name}:{deployment}"

    def replicas() -> list[int]:  # the stack's processes now: a new replica is a new process
        ours = _stack_pids(settings)
        return sorted(p for p in _proc.pids_matching(mark) if p in ours)

    before = replicas()
    if not before:
        raise StackError(f"no replica of {app_name}/{deployment} runs on this stack (no process titled {mark})")
    pid = (rng or random).choice(before)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        if pid in replicas() or not replicas():
            return False
        try:
            return httpx.get(health_url, verify=verify, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    _proc.wait_until(back, timeout=180, what=f"a new replica of {app_name}/{deployment}", interval=0.2)
    return FaultResult("kill-replica", f"{app_name}/{deployment}", time.monotonic() - t0, f"pid {pid} killed")


def restart_postgres(settings: Settings) -> FaultResult:
    """Stop PostgreSQL (fast shutdown: clients are disconnected) and start it again."""
    piece = _our_postgres(settings)
    t0 = time.monotonic()
    postgres.stop(settings)
    started = postgres.start(settings)
    dsn = with_postgres_tls(started.address or "", certs.admin_tls(settings))
    _proc.wait_until(lambda: postgres.ready(dsn), timeout=60, what="PostgreSQL", interval=0.2)
    return FaultResult("restart-postgres", f"postgres pid {piece.pid}", time.monotonic() - t0)


def delay_kafka(settings: Settings, ms: int, seconds: float = 10.0) -> FaultResult:
    """Delay traffic to the broker by ``ms`` for ``seconds``.

    tc netem on the stack's own veth when the broker runs in a namespace of its own; a
    latency toxic on the stack's own Toxiproxy when it runs behind one.
    """
    _our_broker(settings)
    if settings.kafka_delay_proxy:
        set_delay, target = toxiproxy.set_delay, f"toxiproxy :{settings.kafka_port}"
    elif settings.kafka_netns_ip:
        set_delay, target = netns.set_delay, netns.names(settings).host_if
    else:
        raise StackError("this stack's broker runs neither in a network namespace of its own "
                         "(EVENTRAY_KAFKA_NETNS_IP, root, a kernel with netem) nor behind a delay proxy "
                         "(EVENTRAY_KAFKA_DELAY_PROXY=1); start it with one of them to delay it")
    set_delay(settings, ms)
    try:
        time.sleep(seconds)
    finally:
        set_delay(settings, 0)
    t0 = time.monotonic()
    return FaultResult("delay-kafka", target, _wait_kafka(settings, t0), f"{ms} ms for {seconds:.0f}s")


def _proxied_broker(settings: Settings, kind: str) -> None:
    _our_broker(settings)
    if not settings.kafka_delay_proxy:
        raise StackError(f"{kind} needs the stack's broker behind its Toxiproxy (EVENTRAY_KAFKA_DELAY_PROXY=1, "
                         "as the chaos stack runs it)")


def _toxic_for(settings: Settings, kind: str, toxic: str, attributes: dict[str, int], seconds: float,
               toxicity: float, detail: str) -> FaultResult:
    name = f"eventray-{kind}"
    toxiproxy.set_toxic(settings, name, toxic, attributes, toxicity=toxicity)
    try:
        time.sleep(seconds)
    finally:
        toxiproxy.set_toxic(settings, name, None, {})
    t0 = time.monotonic()
    return FaultResult(kind, f"toxiproxy :{settings.kafka_port}", _wait_kafka(settings, t0), detail)


def reset_kafka(settings: Settings, seconds: float = 5.0) -> FaultResult:
    """Reset every client connection to the broker (a TCP RST, Toxiproxy's ``reset_peer``) for
    ``seconds``: connections open then and any opened meanwhile; then wait until it answers."""
    _proxied_broker(settings, "reset-kafka")
    return _toxic_for(settings, "reset-kafka", "reset_peer", {"timeout": 0}, seconds, 1.0,
                      f"connections reset for {seconds:.1f}s")


def loss_kafka(settings: Settings, seconds: float = 8.0, share: float = 0.5) -> FaultResult:
    """Lose what clients send on a ``share`` of their broker connections for ``seconds``: Toxiproxy's
    ``timeout`` toxic drops the data and closes each such connection after 2 s, as a path that
    black-holes packets until the client gives up on it; then wait until the broker answers."""
    if not 0.0 < share <= 1.0:
        raise ConfigurationError(f"loss-kafka acts on a share of the connections in (0, 1], not {share}")
    _proxied_broker(settings, "loss-kafka")
    return _toxic_for(settings, "loss-kafka", "timeout", {"timeout": 2000}, seconds, share,
                      f"{share:.0%} of connections losing data for {seconds:.1f}s")


def delay_available(settings: Settings) -> str | None:
    """None when delay-kafka can run on this stack, else why not."""
    if not (settings.kafka_netns_ip or settings.kafka_delay_proxy):
        return ("the broker runs neither in a network namespace (EVENTRAY_KAFKA_NETNS_IP) nor behind a delay "
                "proxy (EVENTRAY_KAFKA_DELAY_PROXY)")
    try:
        (toxiproxy if settings.kafka_delay_proxy else netns).set_delay(settings, 1)
        (toxiproxy if settings.kafka_delay_proxy else netns).set_delay(settings, 0)
    except StackError as e:
        return e.message
    return None
