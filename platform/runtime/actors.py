"""Named actors that split partitions between them, and how their number changes.

Projection runners and saga coordinators follow one pattern: actor ``<prefix><i>`` owns the
partitions ``p`` with ``p % actors == i`` and answers ``owned()`` and ``stop()``. To change
the number of actors, :func:`place` first stops and removes every actor whose partitions
change (or that is beyond the new count), waits until their names are free, and only then
creates the missing ones, so a partition never has two owners. (Shards release their
partitions through their own protocol; see ``composition.rescale_shards``.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray

log = logging.getLogger("eventray.actors")

NAMESPACE = "eventray"


def indexed_actors(prefix: str) -> dict[int, str]:
    """``{i: name}`` of the live named actors called ``<prefix><i>``."""
    from ray.util import list_named_actors

    out: dict[int, str] = {}
    for entry in list_named_actors(all_namespaces=True):
        name = entry.get("name", "")
        if entry.get("namespace") == NAMESPACE and name.startswith(prefix) and name[len(prefix):].isdigit():
            out[int(name[len(prefix):])] = name
    return out


def remove(name: str, *, stop_timeout_s: float = 20.0) -> bool:
    """Ask the actor ``name`` to ``stop()`` (its work in flight ends), then kill it for good.

    Returns False when no such actor exists.
    """
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    try:
        ray.get(handle.stop.remote(), timeout=stop_timeout_s)
    except Exception as e:  # noqa: BLE001 - killing it is the fallback; the next owner fences or resumes
        log.warning("%s did not stop cleanly: %s", name, e)
    ray.kill(handle, no_restart=True)
    return True


def wait_names_free(names: set[str], timeout_s: float = 30.0) -> None:
    """Wait until none of ``names`` is a live actor (a killed actor frees its name a little later)."""
    from ray.util import list_named_actors

    deadline = time.monotonic() + timeout_s
    while names and time.monotonic() < deadline:
        live = {e.get("name") for e in list_named_actors(all_namespaces=True) if e.get("namespace") == NAMESPACE}
        if not names & live:
            return
        time.sleep(0.05)


def remove_all(prefix: str) -> int:
    """Stop and remove every named actor whose name starts with ``prefix``; how many."""
    from ray.util import list_named_actors

    names = {e["name"] for e in list_named_actors(all_namespaces=True)
             if e.get("namespace") == NAMESPACE and e.get("name", "").startswith(prefix)}
    removed = {n for n in names if remove(n)}
    wait_names_free(removed)
    return len(removed)


def place(prefix: str, desired: list[list[int]], create: Callable[[str, list[int]], Any], *, what: str,
          changes: list[str] | None = None) -> list[Any]:
    """Bring the actors ``<prefix><i>`` to ``desired[i]`` (their partitions); their handles.

    ``create(name, partitions)`` returns the handle of a named actor made with
    ``get_if_exists=True``. Actors whose partitions stay are left alone. ``changes`` (when
    given) receives a line per actor removed or started, named ``what``.
    """
    removed: set[str] = set()
    for index, name in sorted(indexed_actors(prefix).items()):
        owned: list[int] | None
        try:
            owned = ray.get(ray.get_actor(name, namespace=NAMESPACE).owned.remote(), timeout=30)
        except Exception as e:  # noqa: BLE001 - unreachable, or a build without owned(): replace it
            log.warning("%s %s did not answer (%s); replacing it", what, name, e)
            owned = None
        if index < len(desired) and owned == desired[index]:
            continue
        remove(name)
        removed.add(name)
        if changes is not None:
            changes.append(f"removed {what} {name} (partitions {owned})")
    wait_names_free(removed)
    live = set(indexed_actors(prefix).values())
    handles = []
    for index, parts in enumerate(desired):
        name = f"{prefix}{index}"
        handles.append(create(name, parts))
        if changes is not None and name not in live:
            changes.append(f"started {what} {name} (partitions {parts})")
    return handles
