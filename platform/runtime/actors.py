"""The partitioned-actor runtime: named actors that split partitions between them.

Shards, projection runners and saga coordinators are three uses of one pattern, written
once here:

* **assignment**: actor ``i`` of ``n`` owns the partitions ``p`` with ``p % n == i``;
* **naming**: actor ``i`` of a group is ``<prefix><i>`` in the ``eventray`` namespace;
* **placement**: Ray options that spread the actors over the nodes (or keep them on the
  nodes that declare a resource), plus the app's package when it lives outside eventray;
* **rescale with release**: :meth:`ActorGroup.place` releases and removes every actor whose
  partitions change before it starts the new ones, so a partition never has two owners;
* **owner lookup**: :meth:`ActorGroup.owners` asks each live actor what it serves.

Every actor of a group is a Ray async actor (one event loop; blocking Kafka and PostgreSQL
calls run on threads) with this protocol: ``ready()`` (wait until it serves), ``owned()``
(``{"partitions": [...], "serving": bool}``, answered even while recovering) and
``release()`` (stop taking work, finish what is in flight, close).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("eventray.actors")

#: the Ray namespace of every eventray actor
NAMESPACE = "eventray"

#: what ``@ray.remote`` gets for every actor of a group: restarted after a crash, never retried
ACTOR_DEFAULTS: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0}


def assignment(partitions: int, actors: int) -> list[list[int]]:
    """Partitions per actor: partition ``p`` goes to actor ``p % n``, ``n`` = ``actors`` capped to 1..partitions."""
    n = max(1, min(actors, partitions))
    return [[p for p in range(partitions) if p % n == i] for i in range(n)]


def placement(settings: Any) -> dict[str, Any]:
    """Ray actor options that place eventray's actors: spread over the nodes, or packed.

    ``settings.actor_resource`` names a custom resource that only the nodes meant for
    eventray's actors declare (e.g. the workers, keeping the head free); each actor asks for
    a sliver of it, so Ray places and restarts them only there.
    """
    options: dict[str, Any] = {"scheduling_strategy": "SPREAD" if settings.placement == "spread" else "DEFAULT"}
    if settings.actor_resource:
        options["resources"] = {settings.actor_resource: 0.001}
    return options


def live_names() -> set[str]:
    from ray.util import list_named_actors

    return {e.get("name", "") for e in list_named_actors(all_namespaces=True) if e.get("namespace") == NAMESPACE}


def wait_names_free(names: set[str], timeout_s: float = 30.0) -> None:
    """Wait until none of ``names`` is a live actor (a killed actor frees its name a little later)."""
    deadline = time.monotonic() + timeout_s
    while names & live_names():
        if time.monotonic() > deadline:
            from eventray.platform.errors import ConfigurationError

            raise ConfigurationError(f"removed actors still hold their names after {timeout_s:.0f}s: "
                                     f"{sorted(names & live_names())}")
        time.sleep(0.05)


def remove(name: str, *, release_timeout_s: float = 30.0) -> bool:
    """Ask the actor ``name`` to ``release()`` (its work in flight ends), then kill it for good.

    Returns False when no such actor exists.
    """
    import ray

    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    try:
        ray.get(handle.release.remote(), timeout=release_timeout_s)
    except Exception as e:  # noqa: BLE001 - killing it is the fallback; the next owner fences or resumes
        log.warning("%s did not release cleanly: %s", name, e)
    ray.kill(handle, no_restart=True)
    return True


def remove_prefixed(prefix: str) -> int:
    """Release and remove every actor whose name starts with ``prefix`` (several groups: every
    projection of a topic, say); how many there were."""
    removed = {name for name in live_names() if name.startswith(prefix) and remove(name)}
    wait_names_free(removed)
    return len(removed)


@dataclass(frozen=True)
class ActorGroup:
    """The named actors ``<prefix><i>`` that split a topic's partitions between them.

    Attributes:
        prefix: ``"shard:<topic>:"``, ``"projection:<topic>:<name>:v<n>:"``, ``"saga:<topic>:<saga>:"``.
        what: what one actor is, for messages and change lines (``"shard"``).
    """

    prefix: str
    what: str

    def name(self, index: int) -> str:
        """The Ray actor name of actor ``index``."""
        return f"{self.prefix}{index}"

    def live(self) -> dict[int, str]:
        """``{i: name}`` of the live actors of the group, whatever their count."""
        out: dict[int, str] = {}
        for name in live_names():
            if name.startswith(self.prefix) and name[len(self.prefix):].isdigit():
                out[int(name[len(self.prefix):])] = name
        return out

    def handles(self) -> dict[int, Any]:
        import ray

        out = {}
        for index, name in self.live().items():
            try:
                out[index] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:  # gone between the listing and now
                continue
        return out

    def place(self, desired: list[list[int]], create: Callable[[str, list[int]], Any], *,
              changes: list[str] | None = None, wait: bool = True, timeout_s: float = 60.0) -> list[Any]:
        """Bring the group to ``desired[i]`` (actor i's partitions); the handles, in order.

        ``create(name, partitions)`` returns the handle of a named actor made with
        ``get_if_exists=True``. Actors whose partitions stay are left alone; every other one
        is released and removed before any new one starts. ``changes`` (when given) receives
        a line per actor removed or started. With ``wait``, returns once each one is ``ready``.
        """
        import ray

        removed: set[str] = set()
        for index, handle in sorted(self.handles().items()):
            name = self.name(index)
            owned: list[int] | None
            try:
                owned = ray.get(handle.owned.remote(), timeout=timeout_s)["partitions"]
            except Exception as e:  # noqa: BLE001 - unreachable, or an older build: replace it
                log.warning("%s %s did not answer (%s); replacing it", self.what, name, e)
                owned = None
            if index < len(desired) and owned == desired[index]:
                continue
            remove(name, release_timeout_s=timeout_s)
            removed.add(name)
            if changes is not None:
                changes.append(f"removed {self.what} {name} (partitions {owned})")
        wait_names_free(removed, timeout_s)
        live = set(self.live().values())
        handles = []
        for index, parts in enumerate(desired):
            name = self.name(index)
            handles.append(create(name, parts))
            if changes is not None and name not in live:
                changes.append(f"started {self.what} {name} (partitions {parts})")
        if wait:
            ray.get([h.ready.remote() for h in handles])
        return handles

    def remove_all(self) -> int:
        """Release and remove every actor of the group; how many there were."""
        removed = {name for name in self.live().values() if remove(name)}
        wait_names_free(removed)
        return len(removed)

    async def owners(self, *, timeout_s: float = 5.0) -> dict[int, int]:
        """Partition -> index of the live actor serving it (released, fenced or silent ones skipped)."""
        found = await asyncio.to_thread(self.handles)

        async def ask(index: int, handle: Any) -> tuple[int, dict[str, Any] | None]:
            try:
                return index, await asyncio.wait_for(handle.owned.remote(), timeout_s)
            except Exception:  # noqa: BLE001 - starting or dead: it serves nothing now
                return index, None

        owners: dict[int, int] = {}
        for index, info in await asyncio.gather(*(ask(i, h) for i, h in found.items())):
            if info and info.get("serving"):
                for p in info["partitions"]:
                    owners[p] = index
        return owners


#: what :func:`hold_memory` keeps in this process
_HELD: list[bytearray] = []


def hold_memory(mb: int) -> int:
    """Allocate ``mb`` MiB, touch every page and keep it, as a leak would: the means of the chaos
    fault ``oom-runner``, which first puts the process under a memory limit. Returns the bytes held."""
    block = bytearray(int(mb) << 20)
    memoryview(block)[::4096] = b"\x01" * len(range(0, len(block), 4096))  # every page written
    _HELD.append(block)
    return sum(len(b) for b in _HELD)


def group_prefix(kind: str, topic: str, *parts: object) -> str:
    """The name prefix of a group: ``<kind>:<topic>:<part>:...:``."""
    return ":".join((kind, topic, *map(str, parts))) + ":"
