"""ML serving: bulk and interactive request rates through Ray Serve, against their limits and peers.

Per model, in one run:
  * bulk: requests of 256 rows through the Serve handle (the alerts projection's path) vs raw
    in-process onnxruntime on the same batches (one thread, as a 0.25-CPU replica gets);
  * interactive: 1 row per request at c=1 and c=64 through the handle, vs a no-op deployment
    with the same options, and vs sklearn's row-at-a-time ``predict`` (the peer);
  * interactive through GraphQL over HTTP: the same 1-row requests as GraphQL queries
    (``scoreMovement``, ``classifyText``, ``classifyDigit``, ``recommend``) to the GraphQL app
    with the models bound into it, through Serve's HTTP proxy, driven by wrk at c=1 and c=64;
    vs ``{ __typename }`` on the same app (the GraphQL path with no model call);
  * autoscaling: seconds to go 1 -> 3 replicas under load and back, with the CI settings.

And per family added since (``families``: topics, recommend_hybrid, entities, faces, objects, ocr;
the pretrained ones imported from their wheels as ``eventray models import`` does):
  * batched vs unbatched: one item per request at c=16 (the replica's ``@serve.batch`` joins
    them; ``median_batch_requests`` shows it did) against c=1 (every batch holds one request);
  * p50 of one request alone (c=1);
  * bulk through the handle (``BULK_ITEMS``: 256 texts per request for topics, 64 for entities,
    1,024 users for recommend_hybrid's bulk form; one image per request at c=8 for the others)
    against the same requests run in-process on the family (``load_registered``, one thread, as
    a replica gets), ``ratio_bulk_to_direct``; goal >= 0.5.

Run: ``python -m benchmarks.ml_serving [--quick]``; writes benchmarks/results/ml_serving.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import median, parser, print_table, write_results

APP = f"eventray-ml-bench-{os.getpid()}"
BULK_ROWS = 256
#: the first four families, with the classic rows (sklearn peer, GraphQL points)
CLASSIC = ("anomaly", "sentiment", "digits", "recommend")
#: the families with the batched/unbatched/direct rows
FAMILIES = ("topics", "recommend_hybrid", "entities", "faces", "objects", "ocr")
#: items per bulk request of the families that have a bulk form (the others send one image per request)
BULK_ITEMS = {"topics": 256, "entities": 64, "recommend_hybrid": 1024}
FAMILIES_GOAL_BULK_TO_DIRECT = 0.5
#: CPUs each of the benchmark's replicas reserves (see main_async)
BENCH_REPLICA_CPUS = 0.02


class Noop:
    """The no-op peer: the same Serve path, no model."""

    async def __call__(self, payload: Any) -> Any:
        return payload


def _payloads(trained: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(0)
    anomaly_rows = trained["anomaly"].heldout
    texts = list(trained["sentiment"].heldout)
    digits = trained["digits"].heldout * 16.0
    users = trained["recommend"].extra["users"]
    return {
        "anomaly": {"bulk": [anomaly_rows[i:i + BULK_ROWS] for i in range(0, 16 * BULK_ROWS, BULK_ROWS)],
                    "single": [anomaly_rows[i:i + 1] for i in range(512)],
                    "sk_single": lambda i: trained["anomaly"].estimator.predict(anomaly_rows[i % 512:i % 512 + 1])},
        "sentiment": {"bulk": [(texts * 4)[i:i + BULK_ROWS] for i in range(0, 16 * BULK_ROWS, BULK_ROWS)],
                      "single": [texts[i % len(texts)] for i in range(512)],
                      "sk_single": lambda i: trained["sentiment"].estimator.predict([texts[i % len(texts)]])},
        "digits": {"bulk": [np.resize(digits, (BULK_ROWS, 64)) for _ in range(16)],
                   "single": [digits[i % len(digits)][None, :] for i in range(512)],
                   "sk_single": lambda i: trained["digits"].estimator.predict(digits[i % len(digits)][None, :] / 16.0)},
        "recommend": {"bulk": None,  # one user per request: no bulk form
                      "single": [(users[int(u)], 10) for u in rng.integers(0, len(users), 512)],
                      "sk_single": lambda i: _sk_recommend(trained["recommend"], i % len(users))},
    }


def _images() -> list[bytes]:
    """PNGs of scikit-image's bundled astronaut (a face) and coffee (none), and a receipt line
    rendered here with Pillow (text to read)."""
    import io

    from PIL import Image, ImageDraw, ImageFont
    from skimage import data

    out = []
    for arr in (data.astronaut(), data.coffee()):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        out.append(buf.getvalue())
    receipt = Image.new("RGB", (420, 90), "white")
    ImageDraw.Draw(receipt).text((20, 20), "TRANSFER4097", fill="black", font=ImageFont.load_default(size=40))
    buf = io.BytesIO()
    receipt.save(buf, "PNG")
    out.append(buf.getvalue())
    return out


def _family_payloads(trained: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """Per new family: ``single`` (one item per request) and ``bulk`` (the bulk requests)."""
    texts = [t[:1500] for t in trained["topics"].heldout]  # BBC articles, within the 2,000-character limit
    sentences = [t.split(". ")[0][:500] for t in texts]
    users = trained["recommend_hybrid"].extra["users"]
    rng = np.random.default_rng(0)
    hybrid = [(users[int(u)], 10, s) for u, s in zip(rng.integers(0, len(users), 256),
                                                     ["HYBRID", "CONTENT", "COLLABORATIVE"] * 86)]
    images = _images()

    def bulk(items: list[Any], name: str, requests: int) -> list[list[Any]]:
        k = BULK_ITEMS[name]
        return [(items * (1 + requests * k // len(items)))[i:i + k] for i in range(0, requests * k, k)]

    return {
        "topics": {"single": texts[:256], "bulk": bulk(texts, "topics", 8)},
        # the bulk form: a list of (user, first, strategy), one request for k users
        "recommend_hybrid": {"single": hybrid, "bulk": bulk(hybrid, "recommend_hybrid", 4)},
        "entities": {"single": sentences[:256], "bulk": bulk(sentences, "entities", 8)},
        "faces": {"single": images, "bulk": images},
        "objects": {"single": images, "bulk": images},
        "ocr": {"single": images, "bulk": images},
    }


async def _rate_with_latency(call, payloads: list[Any], concurrency: int, seconds: float) -> tuple[float, float]:
    """(requests/s, p50 ms) of ``call`` over ``payloads`` in turn at ``concurrency``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await call(payloads[i % len(payloads)])
            latencies.append(time.perf_counter() - t0)
            i += concurrency

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return len(latencies) / (time.perf_counter() - start), median(latencies) * 1000


def _direct_rate(family: Any, requests: list[Any], seconds: float) -> float:
    """Items/s of the family run in-process, one request at a time (validate, then run)."""
    items, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        item = family.validate(requests[i % len(requests)])
        family.run([item])
        items += family.rows(item)
        i += 1
    return items / (time.perf_counter() - start)


async def _family_rows(client: Any, registry: Any, payloads: dict[str, dict[str, list[Any]]], seconds: float,
                       repeats: int) -> list[dict[str, Any]]:
    from eventray.platform.ml.served import load_registered

    rows = []
    for name in FAMILIES:
        p = payloads[name]

        async def call(x: Any, _name: str = name) -> Any:
            return await client.predict(_name, x)

        texts = isinstance(p["bulk"][0], list)
        per_bulk = len(p["bulk"][0]) if texts else 1
        await _rate(call, p["single"], 16, 1.0)  # warm: load the session, fill caches
        c1 = [await _rate_with_latency(call, p["single"], 1, seconds) for _ in range(repeats)]
        c16 = [await _rate_with_latency(call, p["single"], 16, seconds) for _ in range(repeats)]
        bulk = median([await _rate(call, p["bulk"], 8, seconds, per_bulk) for _ in range(repeats)])
        family = load_registered(registry, registry.record(name), threads=1)
        direct = median([_direct_rate(family, p["bulk"], seconds) for _ in range(repeats)])
        stats = await client.stats(name)
        rows.append({
            "name": name, "items_per_bulk_request": per_bulk,
            "unbatched_items_per_s_c1": median([r for r, _ in c1]),
            "batched_items_per_s_c16": median([r for r, _ in c16]),
            "p50_ms_one_request": median([m for _, m in c1]),
            "p50_ms_c16": median([m for _, m in c16]),
            "bulk_items_per_s": bulk, "direct_items_per_s": direct, "ratio_bulk_to_direct": bulk / direct,
            "median_batch_requests": median([k for k, v in stats["batch_sizes"].items() for _ in range(v)]),
        })
    return rows


def _sk_recommend(t: Any, u: int) -> np.ndarray:
    row = t.extra["train"][u:u + 1]
    scores = t.estimator.transform(row) @ t.estimator.components_ - 1e6 * row
    return np.argsort(-scores[0])[:10]


async def _rate(call, payloads: list[Any], concurrency: int, seconds: float, rows_per_call: int = 1) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        i = k
        while time.perf_counter() < deadline:
            await call(payloads[i % len(payloads)])
            done += 1
            i += concurrency

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done * rows_per_call / (time.perf_counter() - start)


def _raw_rate(family: Any, batches: list[Any], seconds: float) -> float:
    items = [family.validate(b) for b in batches]
    rows, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        family.run([items[i % len(items)]])
        rows += len(items[i % len(items)])
        i += 1
    return rows / (time.perf_counter() - start)


def _sk_rate(fn, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(n)
        n += 1
    return n / (time.perf_counter() - start)


_GQL = {
    "anomaly": "query($a: Float!, $h: Float!, $s: Float!, $v: Float!) "
               "{ scoreMovement(amount: $a, hour: $h, secondsSinceLast: $s, velocity24h: $v) { score anomaly } }",
    "sentiment": "query($t: String!) { classifyText(text: $t) { label keywords { term } } }",
    "digits": "query($p: [Float!]!) { classifyDigit(pixels: $p) { digit confidence } }",
    "recommend": "query($u: ID!) { recommend(userId: $u, first: 10) { itemId score } }",
}

_LUA = """
local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('JSON{"answered":%%d,"non2xx":%%d,"socket":%%d,"timeouts":%%d,"p50":%%f,"p99":%%f}\\n',
    summary.requests, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _gql_bodies(name: str, p: dict[str, Any]) -> list[str]:
    """JSON bodies of the GraphQL form of ``p["single"]`` (the handle path's 1-row requests)."""
    out = []
    for x in p["single"][:64]:
        if name == "anomaly":
            la, h, lg, v = (float(f) for f in x[0])
            variables: dict[str, Any] = {"a": float(np.expm1(la)), "h": h, "s": float(np.expm1(lg)), "v": v}
        elif name == "sentiment":
            variables = {"t": x}
        elif name == "digits":
            variables = {"p": [float(f) for f in x[0]]}
        else:
            variables = {"u": x[0]}
        out.append(json.dumps({"query": _GQL[name], "variables": variables}))
    return out


def _wrk(url: str, bodies: list[str], connections: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """Requests per second of wrk POSTing ``bodies`` in turn; errors counted (non-2xx, socket, timeouts)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: sudo apt-get install -y wrk")
    script = tmp / f"gql-{abs(hash(tuple(bodies))) % 10**8}.lua"
    script.write_text(_LUA % ", ".join(f"[==[{b}]==]" for b in bodies))
    secs = max(3, round(seconds))  # wrk checks timeouts every 2 s
    proc = subprocess.run([wrk, f"-t{1 if connections == 1 else 2}", f"-c{connections}", f"-d{secs}s",
                           "--timeout", f"{secs - 1}s", "-s", str(script), url],
                          capture_output=True, text=True, check=False)
    found = re.search(r"JSON(\{.*\})", proc.stdout)
    if proc.returncode != 0 or not found:
        return {"rps": 0.0, "errors": None, "failed": (proc.stderr or proc.stdout)[-300:]}
    st = json.loads(found.group(1))
    errors = st["non2xx"] + st["socket"] + st["timeouts"]
    return {"rps": (st["answered"] - st["non2xx"]) / secs, "errors": errors, "p50_ms": st["p50"], "p99_ms": st["p99"]}


def _graphql_app(rt: Any) -> tuple[str, Any]:
    """The GraphQL app with the models bound into it, on its own name and route; returns its URL."""
    from eventray.serving import deployment
    from eventray.serving.settings import ServingSettings

    serving = ServingSettings(app_name=f"{APP}-graphql", route_prefix=f"/{APP}-graphql", allow_anonymous=True,
                              rate_limit_per_s=1e6, rate_limit_burst=1_000_000)
    return deployment.run(rt, serving, models=True), serving


async def _graphql_points(rt: Any, payloads: dict[str, Any], names: tuple[str, ...], seconds: float,
                          repeats: int) -> dict[str, dict[str, Any]]:
    """Per model: GraphQL-over-HTTP req/s at c=1 and c=64 (medians), and the no-model baseline."""
    import httpx
    from ray import serve

    url, serving = await asyncio.to_thread(_graphql_app, rt)
    tmp = Path(tempfile.mkdtemp(prefix="eventray-bench-wrk-"))
    out: dict[str, dict[str, Any]] = {}
    try:
        noop = [json.dumps({"query": "{ __typename }"})]
        await asyncio.to_thread(_wrk, url, noop, 16, 3, tmp)  # warm
        base = [await asyncio.to_thread(_wrk, url, noop, 64, seconds, tmp) for _ in range(repeats)]
        out["__typename"] = {"c64": median([r["rps"] for r in base]), "errors": sum(r["errors"] or 0 for r in base)}
        async with httpx.AsyncClient(timeout=30) as http:
            for name in names:
                bodies = _gql_bodies(name, payloads[name])
                for body in bodies[:4]:  # each body answers data, not errors: the rates count real answers
                    got = (await http.post(url, content=body, headers={"content-type": "application/json"})).json()
                    assert "errors" not in got and got.get("data"), got
                await asyncio.to_thread(_wrk, url, bodies, 16, 3, tmp)  # warm
                c1 = [await asyncio.to_thread(_wrk, url, bodies, 1, seconds, tmp) for _ in range(repeats)]
                c64 = [await asyncio.to_thread(_wrk, url, bodies, 64, seconds, tmp) for _ in range(repeats)]
                out[name] = {"c1": median([r["rps"] for r in c1]), "c64": median([r["rps"] for r in c64]),
                             "p50_ms_c64": median([r.get("p50_ms") or 0.0 for r in c64]),
                             "errors": sum(r["errors"] or 0 for r in c1 + c64)}
    finally:
        serve.delete(serving.app_name)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


async def _autoscale(settings: Any) -> tuple[float, float]:
    from ray import serve

    from eventray.serving.models import MLClient, deploy
    from eventray.serving.models.deployment import deployment_name

    app = f"{APP}-autoscale"
    s = settings.model_copy(update={
        "ml_app_name": app, "ml_min_replicas": 1, "ml_max_replicas": 3, "ml_target_ongoing_requests": 2,
        "ml_upscale_delay_s": 0, "ml_downscale_delay_s": 1, "ml_metrics_interval_s": 0.1,
        "ml_look_back_period_s": 0.5, "ml_max_batch_size": 4, "ml_max_ongoing_requests": 8})
    name = deployment_name("anomaly")
    deploy(s, ("anomaly",))

    def running() -> int:
        st = serve.status().applications.get(app)
        return st.deployments[name].replica_states.get("RUNNING", 0) if st and name in st.deployments else 0

    try:
        client = MLClient.connect(s, models=("anomaly",))
        rows = np.random.default_rng(1).normal(size=(256, 4)).astype(np.float32)
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                await client.predict("anomaly", rows)

        workers = [asyncio.create_task(load()) for _ in range(24)]
        start = time.monotonic()
        while running() < 3 and time.monotonic() - start < 60:
            await asyncio.sleep(0.05)
        up = time.monotonic() - start
        stop.set()
        await asyncio.gather(*workers)
        start = time.monotonic()
        while running() > 1 and time.monotonic() - start < 60:
            await asyncio.sleep(0.05)
        return up, time.monotonic() - start
    finally:
        serve.delete(app)


async def main_async(quick: bool, repeats: int) -> dict[str, Any]:
    import ray
    from ray import serve

    from eventray.platform import devstack
    from eventray.platform.composition import Runtime
    from eventray.platform.ml.families import load_family
    from eventray.platform.ml.pretrained import import_pretrained
    from eventray.platform.ml.registry import Registry
    from eventray.platform.ml.training import MODEL_NAMES, train, write_models
    from eventray.serving.models import MLClient, deploy

    seconds = 2.0 if quick else 6.0
    load_before = list(os.getloadavg())
    base = devstack.effective_settings()
    model_dir = Path(tempfile.mkdtemp(prefix="eventray-bench-models-"))
    trained = {n: train(n) for n in MODEL_NAMES}
    write_models(model_dir, list(trained.values()), version="1", seed=0)
    import_pretrained(model_dir)  # faces, objects, ocr, entities, from their wheels
    # replicas reserve BENCH_REPLICA_CPUS each (a scheduling share, not a limit: every replica runs
    # one onnxruntime thread) so the benchmark's 11 deployments and the no-op fit beside the app
    # `make demo` left running, whose replicas hold the default 0.1 each
    settings = base.model_copy(update={"model_dir": model_dir, "ml_app_name": APP, "ml_replica_num_cpus":
                                       BENCH_REPLICA_CPUS, "ml_min_replicas": 1, "ml_max_replicas": 1})
    ray.init(address=base.ray_address, namespace="eventray", logging_level="ERROR", log_to_driver=False)
    needed = (len(Registry(model_dir).names()) + 2) * BENCH_REPLICA_CPUS  # the models, the index, the no-op
    if ray.available_resources().get("CPU", 0.0) < needed:
        raise SystemExit(f"the benchmark's model replicas need {needed:.2f} free CPUs on the Ray cluster and "
                         f"{ray.available_resources().get('CPU', 0.0):.2f} are free: remove other Serve "
                         "applications (serve status) or run it on a fresh stack")
    deploy(settings)
    noop = serve.deployment(Noop).options(
        name="noop", ray_actor_options={"num_cpus": settings.ml_replica_num_cpus},
        max_ongoing_requests=settings.ml_max_ongoing_requests)
    serve.run(noop.bind(), name=f"{APP}-noop", route_prefix=None)
    noop_handle = serve.get_app_handle(f"{APP}-noop")
    client = MLClient.connect(settings)
    registry = Registry(model_dir)
    payloads = _payloads(trained)
    rows = []
    family_rows: list[dict[str, Any]] = []
    try:
        noop_single = [np.zeros((1, 4), dtype=np.float32)]
        await _rate(noop_handle.remote, noop_single, 64, 1.0)  # warm
        noop_c64 = median([await _rate(noop_handle.remote, noop_single, 64, seconds) for _ in range(repeats)])
        noop_c1 = median([await _rate(noop_handle.remote, noop_single, 1, seconds / 2) for _ in range(repeats)])
        for name in CLASSIC:
            p = payloads[name]

            async def call(x, _name=name):
                return await client.predict(_name, x)

            await _rate(call, p["single"], 16, 1.0)  # warm: load the session, fill caches
            row: dict[str, Any] = {"name": name}
            if p["bulk"] is not None:
                record = registry.record(name)
                family = load_family(record.family, registry.path(record), threads=1)
                row["bulk_rows_per_s"] = median([await _rate(call, p["bulk"], 8, seconds, BULK_ROWS)
                                                 for _ in range(repeats)])
                row["raw_rows_per_s"] = median([_raw_rate(family, p["bulk"], seconds) for _ in range(repeats)])
                row["ratio_bulk_to_raw"] = row["bulk_rows_per_s"] / row["raw_rows_per_s"]
            else:
                row.update(bulk_rows_per_s=None, raw_rows_per_s=None, ratio_bulk_to_raw=None)
            row["single_req_per_s_c1"] = median([await _rate(call, p["single"], 1, seconds / 2) for _ in range(repeats)])
            row["single_req_per_s_c64"] = median([await _rate(call, p["single"], 64, seconds) for _ in range(repeats)])
            row["noop_req_per_s_c1"] = noop_c1
            row["noop_req_per_s_c64"] = noop_c64
            row["ratio_single_to_noop"] = row["single_req_per_s_c64"] / noop_c64
            row["sklearn_rows_per_s"] = median([_sk_rate(p["sk_single"], seconds / 2) for _ in range(repeats)])
            row["ratio_single_to_sklearn"] = row["single_req_per_s_c64"] / row["sklearn_rows_per_s"]
            stats = await client.stats(name)
            row["median_batch_requests"] = median([k for k, v in stats["batch_sizes"].items() for _ in range(v)])
            rows.append(row)
        family_rows = await _family_rows(client, registry, _family_payloads(trained), seconds, repeats)
    finally:
        serve.delete(APP)
        serve.delete(f"{APP}-noop")
    gql = await _graphql_points(Runtime.load(settings), payloads, CLASSIC, seconds, repeats)
    for row in rows:
        g = gql[row["name"]]
        row["graphql_req_per_s_c1"] = g["c1"]
        row["graphql_req_per_s_c64"] = g["c64"]
        row["graphql_p50_ms_c64"] = g["p50_ms_c64"]
        row["graphql_noop_req_per_s_c64"] = gql["__typename"]["c64"]
        row["ratio_graphql_to_graphql_noop"] = g["c64"] / gql["__typename"]["c64"]
        row["graphql_errors"] = g["errors"]
    ups, downs = [], []
    for _ in range(1 if quick else repeats):
        up, down = await _autoscale(settings)
        ups.append(up)
        downs.append(down)
    return {"models": rows, "families": family_rows,
            "families_goal_ratio_bulk_to_direct": FAMILIES_GOAL_BULK_TO_DIRECT, "autoscale_up_s": median(ups), "autoscale_down_s": median(downs),
            "autoscale_runs": {"up_s": ups, "down_s": downs},
            "settings": {"bulk_rows": BULK_ROWS, "seconds_per_point": seconds, "repeats": repeats,
                         "replica_num_cpus": settings.ml_replica_num_cpus,
                         "max_batch_size": settings.ml_max_batch_size,
                         "batch_wait_timeout_s": settings.ml_batch_wait_timeout_s,
                         "graphql": "wrk -t2 (-t1 at c=1), anonymous dev profile, rate limit off, one ingress replica, "
                                    "models bound into the GraphQL app (one replica each)"},
            "load_average_1_5_15": {"before": load_before, "after": list(os.getloadavg()), "cpus": os.cpu_count()},
            "not_measured": []}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    data = asyncio.run(main_async(args.quick, repeats))
    path = write_results("ml_serving", data)
    print_table("ML serving (median)", data["models"],
                ["name", "bulk_rows_per_s", "raw_rows_per_s", "ratio_bulk_to_raw", "single_req_per_s_c1",
                 "single_req_per_s_c64", "noop_req_per_s_c64", "ratio_single_to_noop", "sklearn_rows_per_s",
                 "ratio_single_to_sklearn", "median_batch_requests"])
    print_table("ML over GraphQL/HTTP (median req/s)", data["models"],
                ["name", "graphql_req_per_s_c1", "graphql_req_per_s_c64", "graphql_noop_req_per_s_c64",
                 "ratio_graphql_to_graphql_noop", "graphql_p50_ms_c64", "graphql_errors"])
    print_table("the newer families (median)", data["families"],
                ["name", "unbatched_items_per_s_c1", "batched_items_per_s_c16", "median_batch_requests",
                 "p50_ms_one_request", "bulk_items_per_s", "direct_items_per_s", "ratio_bulk_to_direct"])
    print(f"autoscale up {data['autoscale_up_s']:.1f}s, down {data['autoscale_down_s']:.1f}s; wrote {path}")


if __name__ == "__main__":
    main()
