"""GraphQL on Ray Serve against the same app under plain uvicorn, driven by wrk.

``python -m benchmarks.graphql [--quick]``

* Load: wrk drives the ``deposit`` mutation (random account of a set spread over every
  partition) and an ``account`` read-model query at c = 1, 32 and 256: req/s, p50, p99.
* Baseline in the same run: the same Starlette + Ariadne app (``eventray.serving.plain``) in
  one uvicorn process, talking to the same shard actors and read models.
* Serve options: replica count and ``max_ongoing_requests`` are tried at c=32 on the query
  and the fastest configuration is kept for the full run. Ray 2.60's
  ``RAY_SERVE_ENABLE_DIRECT_INGRESS`` / ``RAY_SERVE_ENABLE_HA_PROXY`` are read by the Serve
  controller at start: ``--serve-env`` restarts Serve with them (it removes every Serve app
  on the cluster, so it is opt-in).
* Subscriptions: one asyncio client opens as many graphql-transport-ws subscriptions as it
  can (target 10,000; the fd limit is raised), then one deposit must reach every one.

Results go to benchmarks/results/graphql.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import parser, print_table, write_results
from eventray.serving.api.principal import mint_token
from eventray.serving.settings import DEV_JWT_SECRET, ServingSettings

PLAIN_PORT = 8011
CONCURRENCY = (1, 32, 256)
N_ACCOUNTS = 64
UNLIMITED = {"rate_limit_per_s": 1e9, "rate_limit_burst": 10**9}

WRK_LUA = """
local accounts = {%(accounts)s}
local token = "%(token)s"
local kind = "%(kind)s"
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. token
request = function()
  local a = accounts[math.random(#accounts)]
  local body
  if kind == "deposit" then
    body = '{"query":"mutation($i: DepositInput!) { deposit(input: $i) { __typename ... on CommandSuccess { version } } }","variables":{"i":{"accountId":"' .. a .. '","amount":1}}}'
  else
    body = '{"query":"query($id: ID!) { account(id: $id) { id balance version } }","variables":{"id":"' .. a .. '"}}'
  end
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\\"p50\\":%%f,\\"p99\\":%%f,\\"requests\\":%%d,\\"errors\\":%%d,\\"non2xx\\":%%d}\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        return shutil.which("wrk") or "wrk"
    raise SystemExit("wrk is missing: sudo apt-get install -y wrk")


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    out = subprocess.run([ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    stats = json.loads(re.search(r"JSON(\{.*\})", out).group(1))
    return {"rps": round(rps, 1), "p50_ms": round(stats["p50"], 2), "p99_ms": round(stats["p99"], 2),
            "errors": stats["errors"] + stats["non2xx"]}


def setup_accounts(url: str, token: str) -> list[str]:
    run = uuid.uuid4().hex[:6]
    owner = f"bench-{run}"
    accounts = [f"bench-{run}-{i}" for i in range(N_ACCOUNTS)]
    batch = [{"registerUser": {"userId": owner, "name": "Bench", "email": f"{run}@bench.example"}}]
    batch += [{"openAccount": {"accountId": a, "ownerId": owner, "currency": "EUR"}} for a in accounts]
    batch += [{"deposit": {"accountId": a, "amount": 1}} for a in accounts]
    r = httpx.post(url, headers={"authorization": f"Bearer {token}"}, timeout=60, json={
        "query": "mutation($c: [CommandInput!]!) { submitCommands(commands: $c) { __typename } }",
        "variables": {"c": batch}})
    assert all(x["__typename"] == "CommandSuccess" for x in r.json()["data"]["submitCommands"]), r.text
    # the read model must have them before the query runs
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = httpx.post(url, headers={"authorization": f"Bearer {token}"}, json={
            "query": f'{{ account(id: "{accounts[-1]}") {{ balance }} }}'}).json()
        if (got.get("data") or {}).get("account"):
            break
        time.sleep(0.2)
    return accounts


def scripts(tmp: Path, accounts: list[str], token: str) -> dict[str, Path]:
    out = {}
    for kind in ("deposit", "account"):
        path = tmp / f"{kind}.lua"
        path.write_text(WRK_LUA % {"accounts": ",".join(f'"{a}"' for a in accounts), "token": token, "kind": kind})
        out[kind] = path
    return out


def sweep(url: str, lua: dict[str, Path], seconds: int, label: str) -> list[dict[str, Any]]:
    rows = []
    for kind in ("account", "deposit"):
        for c in CONCURRENCY:
            r = wrk(url, lua[kind], c, seconds)
            rows.append({"server": label, "op": kind, "c": c, **r})
            print(f"  {label:6} {kind:8} c={c:<4} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:>7.2f} ms  "
                  f"p99 {r['p99_ms']:>8.2f} ms  errors {r['errors']}", flush=True)
    return rows


def start_plain(settings_env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "eventray.serving.plain", "--port", str(PLAIN_PORT)],
                            env={**os.environ, **settings_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{PLAIN_PORT}/healthz").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"plain uvicorn did not start: {proc.stderr.read().decode()[-2000:]}")


async def hold_subscriptions(ws_url: str, http_url: str, token: str, account: str, target: int,
                             open_concurrency: int = 200) -> dict[str, Any]:
    """Open up to ``target`` subscriptions; then one deposit must reach each one."""
    import websockets

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, target * 2 + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    sem = asyncio.Semaphore(open_concurrency)
    conns: list[Any] = []
    failures: list[str] = []
    init = json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    sub = json.dumps({"id": "1", "type": "subscribe", "payload": {
        "query": f'subscription {{ events(aggregateId: "{account}") {{ type version }} }}'}})

    async def open_one() -> None:
        async with sem:
            try:
                ws = await websockets.connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=60,
                                              ping_interval=None, max_queue=16, compression=None)
                await ws.send(init)
                ack = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if ack["type"] != "connection_ack":
                    raise RuntimeError(f"no ack: {ack}")
                await ws.send(sub)
                conns.append(ws)
            except Exception as e:  # noqa: BLE001 - counted; the figure is what was held
                failures.append(f"{type(e).__name__}: {e}"[:200])

    t0 = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(target)))
    open_s = time.perf_counter() - t0
    await asyncio.sleep(2.0)  # every subscribe message processed before the event
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(http_url, headers={"authorization": f"Bearer {token}"}, json={
            "query": f'mutation {{ deposit(input: {{accountId: "{account}", amount: 1}}) {{ __typename }} }}'})
        assert r.json()["data"]["deposit"]["__typename"] == "CommandSuccess", r.text

    async def wait_event(ws: Any) -> bool:
        try:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if msg["type"] == "next":
                    return msg["payload"]["data"]["events"]["type"] == "MoneyDeposited"
        except Exception:  # noqa: BLE001 - counted as not delivered
            return False

    t1 = time.perf_counter()
    delivered = sum(await asyncio.gather(*(wait_event(ws) for ws in conns)))
    deliver_s = time.perf_counter() - t1
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return {"target": target, "held": len(conns), "delivered": delivered, "open_s": round(open_s, 1),
            "deliver_s": round(deliver_s, 2), "open_failures": len(failures),
            "first_failure": failures[0] if failures else None}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ws-target", type=int, default=None, help="subscriptions to hold (default 10000, quick 2000)")
    p.add_argument("--serve-env", default="", help="restart Serve with these env flags, e.g. "
                   "RAY_SERVE_ENABLE_DIRECT_INGRESS=1 (removes every Serve app)")
    args = p.parse_args()
    seconds = 5 if args.quick else 15
    ws_target = args.ws_target or (2000 if args.quick else 10_000)

    from ray import serve

    from eventray.platform import composition
    from eventray.platform.devstack.state import effective_settings
    from eventray.serving import deployment
    from eventray.serving.projections_setup import ensure_projections

    settings = effective_settings()
    composition.start_shards(settings)
    ensure_projections(settings)
    token = mint_token("bench-teller", "teller", secret=DEV_JWT_SECRET, ttl_s=24 * 3600)
    if args.serve_env:
        env = dict(kv.split("=", 1) for kv in args.serve_env.split(","))
        composition.connect_ray(settings)
        serve.shutdown()
        import ray

        ray.shutdown()
        ray.init(address=settings.ray_address, namespace="eventray", runtime_env={"env_vars": env},
                 logging_level="WARNING", log_to_driver=False)

    plain = start_plain({"EVENTRAY_RATE_LIMIT_PER_S": "1e9", "EVENTRAY_RATE_LIMIT_BURST": str(10**9)})
    plain_url = f"http://127.0.0.1:{PLAIN_PORT}/graphql"
    results: dict[str, Any] = {"seconds_per_point": seconds, "serve_env": args.serve_env or None}
    try:
        accounts = setup_accounts(plain_url, token)
        with tempfile.TemporaryDirectory() as tmp:
            lua = scripts(Path(tmp), accounts, token)
            print("plain uvicorn (one process):", flush=True)
            plain_rows = sweep(plain_url, lua, seconds, "plain")

            # Serve options, compared on the query at c=32
            options = [(1, 256), (1, 1024), (2, 1024)]
            trials = []
            for replicas, ongoing in options:
                serving = ServingSettings(app_name="eventray-bench", route_prefix="/bench", replicas=replicas,
                                          max_ongoing_requests=ongoing, **UNLIMITED)
                url = deployment.run(settings, serving)
                time.sleep(2)
                r = wrk(url, lua["account"], 32, max(3, seconds // 2))
                trials.append({"replicas": replicas, "max_ongoing_requests": ongoing, **r})
                print(f"  serve option replicas={replicas} max_ongoing={ongoing}: {r['rps']} req/s "
                      f"p50 {r['p50_ms']} ms errors {r['errors']}", flush=True)
            best = max((t for t in trials if t["errors"] == 0), key=lambda t: t["rps"], default=trials[0])
            serving = ServingSettings(app_name="eventray-bench", route_prefix="/bench", replicas=best["replicas"],
                                      max_ongoing_requests=best["max_ongoing_requests"], **UNLIMITED)
            url = deployment.run(settings, serving)
            time.sleep(2)
            print(f"ray serve (replicas={best['replicas']}, max_ongoing_requests={best['max_ongoing_requests']}):",
                  flush=True)
            serve_rows = sweep(url, lua, seconds, "serve")
        print(f"subscriptions: holding up to {ws_target} connections through Serve", flush=True)
        ws = asyncio.run(hold_subscriptions(url.replace("http://", "ws://"), url, token, accounts[0], ws_target))
        print(f"  held {ws['held']}, delivered {ws['delivered']}, opened in {ws['open_s']}s", flush=True)
        deployment.shutdown(serving)
    finally:
        plain.terminate()
        plain.wait(timeout=10)

    def pick(rows: list[dict[str, Any]], op: str, c: int) -> dict[str, Any]:
        return next(r for r in rows if r["op"] == op and r["c"] == c)

    serve32, plain32 = pick(serve_rows, "deposit", 32), pick(plain_rows, "deposit", 32)
    results.update({
        "serve_rps_c32": serve32["rps"],
        "plain_rps_c32": plain32["rps"],
        "ratio_c32": round(serve32["rps"] / plain32["rps"], 3) if plain32["rps"] else None,
        "p50_ms_c1": pick(serve_rows, "deposit", 1)["p50_ms"],
        "p99_ms_c32": serve32["p99_ms"],
        "ws_connections_held": ws["held"],
        "ws_events_delivered": ws["delivered"],
        "query_serve_rps_c32": pick(serve_rows, "account", 32)["rps"],
        "query_plain_rps_c32": pick(plain_rows, "account", 32)["rps"],
        "query_ratio_c32": round(pick(serve_rows, "account", 32)["rps"] / pick(plain_rows, "account", 32)["rps"], 3),
        "query_p50_ms_c1": pick(serve_rows, "account", 1)["p50_ms"],
        "serve_option_trials": trials,
        "serve_choice": {"replicas": best["replicas"], "max_ongoing_requests": best["max_ongoing_requests"]},
        "rows": plain_rows + serve_rows,
        "subscriptions": ws,
        "goals": {"p50_ms_c1_max": 10, "ratio_c32_min": 0.6, "ws_connections_min": 10_000},
    })
    print_table("GraphQL: Serve vs plain uvicorn", plain_rows + serve_rows,
                ["server", "op", "c", "rps", "p50_ms", "p99_ms", "errors"])
    path = write_results("graphql", results)
    print(json.dumps({k: results[k] for k in ("serve_rps_c32", "plain_rps_c32", "ratio_c32", "p50_ms_c1",
                                              "p99_ms_c32", "ws_connections_held")}))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
