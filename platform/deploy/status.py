"""``eventray status``: nodes, where each eventray actor runs, Serve, and the lag of the readers."""

from __future__ import annotations

from typing import Any

from eventray.platform.runtime.actors import group_prefix


def cluster_status(rt: Any) -> dict[str, Any]:
    """A plain-data picture of the cluster and the app of ``rt`` (the CLI renders it; tests read it)."""
    import ray
    from ray._private.state import actors as gcs_actors  # straight from the GCS: no dashboard needed

    settings = rt.settings
    rt.connect_ray()
    nodes = {n["NodeID"]: n for n in ray.nodes()}
    out: dict[str, Any] = {
        "nodes": [{"node_id": i[:12], "ip": n["NodeManagerAddress"], "alive": n["Alive"],
                   "head": "node:__internal_head__" in n.get("Resources", {}),
                   "resources": {k: v for k, v in n.get("Resources", {}).items() if not k.startswith("node:")}}
                  for i, n in nodes.items()],
        "actors": [],
    }
    prefixes = tuple(group_prefix(kind, rt.topic) for kind in ("shard", "projection", "saga"))
    for a in gcs_actors().values():
        name = a.get("Name") or ""
        if a.get("State") != "ALIVE" or not (name.startswith(prefixes) or "Serve" in a.get("ClassName", "")
                                             or name.startswith("SERVE_")):
            continue
        node_id = (a.get("Address") or {}).get("NodeID", "")
        node = nodes.get(node_id, {})
        out["actors"].append({"name": name or a.get("ClassName"), "node": node.get("NodeManagerAddress", "?"),
                              "node_id": node_id[:12], "pid": a.get("Pid")})
    out["actors"].sort(key=lambda a: a["name"])
    try:
        from ray import serve

        out["serve"] = {name: str(app.status) for name, app in serve.status().applications.items()}
    except Exception as exc:  # noqa: BLE001 - Serve not running is a status, not an error
        out["serve"] = {"error": str(exc)}
    out["app"] = settings.app
    out["projections"], out["sagas"] = _lags(rt)
    return out


def _lags(rt: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import ray

    from eventray.platform.projections.replay import LogEnds
    from eventray.platform.projections.store import ProjectionStore
    from eventray.platform.sagas.composition import coordinator_group

    settings = rt.settings
    ends_reader = LogEnds(settings.kafka_address, rt.topic, settings.partitions, tls=settings.tls_files())
    try:
        ends = ends_reader()
    finally:
        ends_reader.close()
    projections: dict[str, Any] = {}
    store = ProjectionStore(settings.dsn)
    try:
        for name, version in store.current_versions(rt.topic, list(rt.app.projections)).items():
            offsets, _ = store.progress(name, version)
            projections[f"{name} v{version}"] = sum(max(0, e - offsets.get(p, 0)) for p, e in ends.items())
    finally:
        store.close()
    sagas: dict[str, Any] = {}
    try:
        for saga in rt.app.sagas:
            coordinators = coordinator_group(rt.topic, saga)
            for index, handle in sorted(coordinators.handles().items()):
                described: list[dict[str, Any]] = ray.get(handle.describe.remote(), timeout=10)
                for d in described:  # one per saga partition it drives
                    pos = {int(k): v for k, v in (d.get("positions") or {}).items()}
                    sagas[f"{coordinators.name(index)} [partition {d.get('index')}]"] = sum(
                        max(0, end - pos.get(p, 0)) for p, end in ends.items())
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        sagas["error"] = str(exc)
    return projections, sagas
