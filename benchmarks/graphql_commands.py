"""Commands as users send them: deposits over GraphQL/HTTP from an outside client, against the peer.

    python -m benchmarks.graphql_commands [--quick] [--repeats N]

* The load client is wrk (a process of its own, C, with a Lua script), never the server's
  own process. It sends the bank's ``deposit`` mutation, one per request, to random accounts of
  a set spread over every partition, with a pool of 64 bearer tokens (64 users: the per-user
  rate limit is the default, and no single user hits it).
* (a) **eventray**: the app as ``make demo`` deploys it (``deploy``: shards, every read model
  on its projection host, saga coordinators, the GraphQL ingress on Ray Serve), at the URL the
  deploy reports, on the default path and settings. Run it on the stack ``make demo`` leaves
  running, or on a bare dev stack (it deploys the app first).
* (b) **read_limit**: the same Starlette + Ariadne app under plain uvicorn
  (``python -m eventray.serving.plain``), answering the ``account`` read-model query.
* (c) **peer**: the eventsourcing library on PostgreSQL behind the same printed schema under
  uvicorn (``benchmarks/_peer_graphql.py``), answering the same ``deposit`` mutation.
* Each of c = 1, 16, 64, 256 is measured for the three systems in turn, repeats interleaved;
  medians over repeats. Then ``submitCommands`` with 100 deposits per request at c=16
  (``batch_cmds_per_s``: deposits that succeeded per second).
* What TLS costs (``tls_cost``; ``--no-tls-cost`` skips it): the same ``deposit`` load on the app
  under plain uvicorn, twice in the same run: on the benchmark's stack and on a companion Kafka
  and PostgreSQL that differ from it only in ``EVENTRAY_TLS`` (``benchmarks/_companion.py``),
  each server on HTTPS exactly when its stack has TLS on, each on a topic with shards of its own.
  So "on" is mutual TLS to Kafka and PostgreSQL plus HTTPS at the ingress, "off" is plaintext
  everywhere; their ratio per concurrency.
* Counting: an answer is a success only when it says so (``CommandSuccess``; for the query, no
  ``errors``). A typed retryable answer (``RetryableError``, or HTTP 429/503) is counted as
  ``overloaded``, apart from errors; everything else (socket errors, timeouts, other non-2xx,
  other answers, requests unanswered at the end of a run in which nothing succeeded) is an error.

Writes benchmarks/results/graphql_commands.json.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import median, parser, print_table, write_results
from benchmarks.graphql import existing_accounts, run_wrk, wait_healthy

CONCURRENCY = (1, 16, 64, 256)
BATCH = 100
BATCH_CONCURRENCY = 16
ACCOUNTS = 1024
SUBJECTS = 64
PLAIN_PORT = 18031
PEER_PORT = 18032
#: the plain servers of the TLS-cost rows, by whether their stack has TLS on
TLS_PORTS = {True: 18033, False: 18034}
GOALS = {"vs_peer": {"1": 1.0, "16": 3.0, "64": 5.0, "256": 10.0}, "c64_fraction_of_read_limit": 0.7,
         "p99_ms_c64": 50.0, "errors_c256": 0, "batch_cmds_per_s": 20_000, "p50_c1": "<= peer"}

LUA = r"""
local accounts = {%(accounts)s}
local tokens = {%(tokens)s}
local kind = "%(kind)s"
local batch = %(batch)d
local threads = {}
local bodies = {}
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
function setup(thread) table.insert(threads, thread) end
function init(args)
  sent = 0; answered = 0; non2xx = 0; bad = 0; overloaded = 0; ok_cmds = 0
  if kind == "batch" then
    for b = 1, 16 do
      local parts = {}
      for i = 1, batch do
        parts[i] = '{"deposit":{"accountId":"' .. accounts[math.random(#accounts)] .. '","amount":1}}'
      end
      bodies[b] = '{"query":"mutation($c: [CommandInput!]!) { submitCommands(commands: $c) { __typename } }","variables":{"c":[' .. table.concat(parts, ",") .. ']}}'
    end
  end
end
request = function()
  sent = sent + 1
  local headers = {}
  headers["content-type"] = "application/json"
  headers["authorization"] = "Bearer " .. tokens[math.random(#tokens)]
  local body
  if kind == "batch" then
    body = bodies[math.random(#bodies)]
  elseif kind == "deposit" then
    body = '{"query":"mutation($i: DepositInput!) { deposit(input: $i) { __typename ... on CommandSuccess { version } } }","variables":{"i":{"accountId":"' .. accounts[math.random(#accounts)] .. '","amount":1}}}'
  else
    body = '{"query":"query($id: ID!) { account(id: $id) { id balance version } }","variables":{"id":"' .. accounts[math.random(#accounts)] .. '"}}'
  end
  return wrk.format(nil, nil, headers, body)
end
response = function(status, headers, body)
  answered = answered + 1
  if status == 429 or status == 503 then overloaded = overloaded + 1
  elseif status < 200 or status > 299 then non2xx = non2xx + 1
  elseif kind == "account" then
    if string.find(body, '"errors"', 1, true) then bad = bad + 1 else ok_cmds = ok_cmds + 1 end
  else
    local _, good = string.gsub(body, "CommandSuccess", "")
    local _, retry = string.gsub(body, "RetryableError", "")
    ok_cmds = ok_cmds + good
    local want = kind == "batch" and batch or 1
    if good < want then
      if retry > 0 and good + retry == want then overloaded = overloaded + 1 else bad = bad + 1 end
    end
  end
end
done = function(summary, latency, requests)
  local s, a, n, b, o, k = 0, 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); a = a + t:get("answered"); n = n + t:get("non2xx"); b = b + t:get("bad")
    o = o + t:get("overloaded"); k = k + t:get("ok_cmds")
  end
  io.write(string.format("JSON{\"p50\":%%f,\"p99\":%%f,\"socket\":%%d,\"timeouts\":%%d,\"sent\":%%d,\"answered\":%%d,\"non2xx\":%%d,\"bad\":%%d,\"overloaded\":%%d,\"ok_cmds\":%%d}\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout, s, a, n, b, o, k))
end
"""


def script(tmp: Path, kind: str, accounts: list[str], tokens: list[str]) -> Path:
    path = tmp / f"{kind}-{uuid.uuid4().hex[:6]}.lua"
    path.write_text(LUA % {"accounts": ",".join(f'"{a}"' for a in accounts),
                           "tokens": ",".join(f'"{t}"' for t in tokens), "kind": kind, "batch": BATCH})
    return path


def point(url: str, lua: Path, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run: successes/s, p50/p99 of answered requests, errors and overloaded apart."""
    st, failed = run_wrk(url, lua, connections, seconds)
    if st is None:
        return {"rps": 0.0, "cmds_per_s": 0.0, "p50_ms": None, "p99_ms": None, "errors": connections,
                "overloaded": 0, "failed": failed}
    unanswered = max(0, st["sent"] - st["answered"])
    ok = st["answered"] - st["non2xx"] - st["bad"] - st["overloaded"]
    errors = st["socket"] + st["timeouts"] + st["non2xx"] + st["bad"] + (unanswered if ok <= 0 else 0)
    return {"rps": round(ok / seconds, 1), "cmds_per_s": round(st["ok_cmds"] / seconds, 1),
            "p50_ms": round(st["p50"], 2) if st["answered"] else None,
            "p99_ms": round(st["p99"], 2) if st["answered"] else None,
            "errors": errors, "overloaded": st["overloaded"], "timeouts": st["timeouts"],
            "socket_errors": st["socket"], "non2xx": st["non2xx"], "not_success": st["bad"],
            "unanswered_at_end": unanswered}


def summary(system: str, concurrency: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return round(median(vals), 2) if vals else None

    return {"system": system, "concurrency": concurrency, "rps": med("rps"), "p50_ms": med("p50_ms"),
            "p99_ms": med("p99_ms"), "errors": sum(r["errors"] for r in runs),
            "overloaded": sum(r["overloaded"] for r in runs), "repeats": len(runs),
            "rps_runs": [r["rps"] for r in runs], "cmds_per_s": med("cmds_per_s")}


def start(cmd: list[str], env: dict[str, str], health: str, what: str, *,
          verify: ssl.SSLContext | bool = True) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_healthy(health, 180, verify=verify)
    except SystemExit:
        proc.kill()
        err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        raise SystemExit(f"{what} did not start: {err}") from None
    return proc


def open_accounts(url: str, token: str, accounts: list[str], *, verify: ssl.SSLContext | bool = True) -> None:
    owner = f"bench-{uuid.uuid4().hex[:6]}"
    first = [{"registerUser": {"userId": owner, "name": "Bench", "email": f"{owner}@bench.example"}}]
    for i in range(0, len(accounts), 256):
        batch = (first if i == 0 else []) + [
            {"openAccount": {"accountId": a, "ownerId": owner, "currency": "EUR"}} for a in accounts[i:i + 256]]
        r = httpx.post(url, headers={"authorization": f"Bearer {token}"}, timeout=120, verify=verify, json={
            "query": "mutation($c: [CommandInput!]!) { submitCommands(commands: $c) { __typename } }",
            "variables": {"c": batch}})
        kinds = [x["__typename"] for x in r.json()["data"]["submitCommands"]]
        if any(k != "CommandSuccess" for k in kinds):
            raise SystemExit(f"could not open the benchmark accounts: {r.text[:500]}")


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_tls_cost(settings: Any, tokens: list[str], seconds: int, repeats: int, advance: Any) -> dict[str, Any]:
    """``deposit`` under plain uvicorn on the benchmark's stack and on the companion (TLS flipped)."""
    from benchmarks._companion import companion, env_for
    from eventray.platform.composition import Runtime
    from eventray.platform.runtime.shards import start_shards, stop_shards

    run = uuid.uuid4().hex[:6]
    rows: list[dict[str, Any]] = []
    with companion(settings) as other, tempfile.TemporaryDirectory() as tmpdir:
        # both on a topic of their own with shards of their own (actors are named by topic): the
        # app `make demo` deployed keeps its projections and sagas on the default topic, which
        # would otherwise apply the TLS side's deposits on the same two cores
        stacks = [s.model_copy(update={"topic": f"bench-gql-tls-{run}-{'on' if s.tls else 'off'}"})
                  for s in (settings, other)]
        runtimes = [Runtime.load(s) for s in stacks]
        for rt in runtimes:
            start_shards(rt)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            targets: dict[bool, tuple[str, Path]] = {}
            for stack in stacks:
                scheme, port = ("https" if stack.tls else "http"), TLS_PORTS[stack.tls]
                verify = ssl.create_default_context(cafile=str(stack.tls_dir / "ca.crt")) if stack.tls else True
                base = f"{scheme}://127.0.0.1:{port}"
                procs.append(start([sys.executable, "-m", "eventray.serving.plain", "--port", str(port)],
                                   env_for(stack, https=stack.tls), base,
                                   f"plain uvicorn with TLS {'on' if stack.tls else 'off'}", verify=verify))
                ids = [f"bench-tls-{run}-{i}" for i in range(ACCOUNTS)]
                open_accounts(f"{base}/graphql", tokens[0], ids, verify=verify)
                targets[stack.tls] = (f"{base}/graphql", script(Path(tmpdir), "deposit", ids, tokens))
            for url, lua in targets.values():  # warm-up: connections, handshakes, caches
                point(url, lua, 16, 3)
            for c in CONCURRENCY:
                runs: dict[bool, list[dict[str, Any]]] = {tls: [] for tls in targets}
                for _ in range(repeats):
                    for tls, (url, lua) in targets.items():
                        runs[tls].append(point(url, lua, c, seconds))
                        advance()
                rows += [{**summary("eventray_plain", c, runs[tls]), "tls": tls} for tls in (True, False)]
        finally:
            stop_all(procs)
            for rt in runtimes:
                stop_shards(rt)
    on = {r["concurrency"]: r for r in rows if r["tls"]}
    off = {r["concurrency"]: r for r in rows if not r["tls"]}
    return {
        "rows": rows,
        "benchmark_stack_tls": settings.tls,
        "on": "mutual TLS to Kafka and PostgreSQL, HTTPS at the ingress", "off": "plaintext everywhere",
        "rps_on_over_off": {str(c): round(on[c]["rps"] / off[c]["rps"], 3) if on[c]["rps"] and off[c]["rps"]
                            else None for c in CONCURRENCY},
        "p50_ms_added_by_tls": {str(c): round(on[c]["p50_ms"] - off[c]["p50_ms"], 2)
                                if on[c]["p50_ms"] is not None and off[c]["p50_ms"] is not None else None
                                for c in CONCURRENCY},
    }


def main() -> None:  # noqa: PLR0915 - the run's script, in order
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--no-tls-cost", action="store_true",
                    help="skip the TLS-cost rows (plain uvicorn on a companion stack with TLS the other way)")
    args = ap.parse_args()
    seconds = 3 if args.quick else 10
    repeats = args.repeats or (2 if args.quick else 3)

    from rich.console import Console
    from rich.progress import Progress

    from benchmarks._peer_eventsourcing import drop_schema
    from eventray.platform.composition import Runtime
    from eventray.platform.demo import _models as deploy_models
    from eventray.platform.deploy.deploy import deploy
    from eventray.platform.devstack import stack
    from eventray.platform.devstack.state import effective_settings
    from eventray.serving.api.principal import mint_token
    from eventray.serving.settings import ServingSettings

    stack.up()
    settings = effective_settings()
    rt = Runtime.load(settings)
    rt.connect_ray()
    serving = ServingSettings()
    if serving.hs256_secret is None:
        raise SystemExit("the benchmark mints dev tokens: run it on the dev profile")
    t0 = time.perf_counter()
    deploy_models(rt, serving, Console(stderr=True))  # as `make demo`: the saga scores with a model
    report = deploy(rt, None, serving=serving, strict=True)
    url = report.graphql_url
    assert url is not None
    print(f"eventray at {url} (deployed or already up in {time.perf_counter() - t0:.1f}s; "
          f"Kafka client {settings.kafka_client})")
    tokens = [mint_token(f"bench-user-{i}", "teller", secret=serving.hs256_secret, audience=serving.jwt_audience)
              for i in range(SUBJECTS)]
    run = uuid.uuid4().hex[:6]
    accounts = [f"bench-{run}-{i}" for i in range(ACCOUNTS)]
    open_accounts(url, tokens[0], accounts)
    query_accounts = existing_accounts(settings, 256) or accounts
    env = {**os.environ}
    schema = f"bench_gql_peer_{run}"
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[dict[str, Any]] = []
    try:
        procs.append(start([sys.executable, "-m", "eventray.serving.plain", "--port", str(PLAIN_PORT)], env,
                           f"http://127.0.0.1:{PLAIN_PORT}", "plain uvicorn (the read limit)"))
        procs.append(start([sys.executable, "-m", "benchmarks._peer_graphql", "--port", str(PEER_PORT), "--dsn",
                            settings.dsn, "--schema", schema, "--accounts", str(ACCOUNTS)], env,
                           f"http://127.0.0.1:{PEER_PORT}", "the peer under uvicorn"))
        peer_accounts = [f"bench-peer-{i}" for i in range(ACCOUNTS)]
        targets = {
            "eventray": (url, "deposit", accounts),
            "read_limit": (f"http://127.0.0.1:{PLAIN_PORT}/graphql", "account", query_accounts),
            "peer": (f"http://127.0.0.1:{PEER_PORT}/graphql", "deposit", peer_accounts),
        }
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            luas = {name: script(tmp, kind, ids, tokens) for name, (_, kind, ids) in targets.items()}
            for name, (target, _, _) in targets.items():  # warm-up: connections, JIT, caches
                point(target, luas[name], 16, 3)
            with Progress() as bar:
                task = bar.add_task("graphql commands", total=len(CONCURRENCY) * repeats * len(targets) + repeats)
                for c in CONCURRENCY:
                    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
                    for _ in range(repeats):
                        for name, (target, _, _) in targets.items():
                            runs[name].append(point(target, luas[name], c, seconds))
                            bar.advance(task)
                    rows += [summary(name, c, runs[name]) for name in targets]
                batch_lua = script(tmp, "batch", accounts, tokens)
                batch_runs = []
                for _ in range(repeats):
                    batch_runs.append(point(url, batch_lua, BATCH_CONCURRENCY, seconds))
                    bar.advance(task)
    finally:
        stop_all(procs)
        drop_schema(settings.dsn, schema)
    batch = summary("eventray_batch", BATCH_CONCURRENCY, batch_runs)
    tls_cost = None
    if not args.no_tls_cost:
        with Progress() as bar:
            task = bar.add_task("what TLS costs", total=len(CONCURRENCY) * repeats * 2)
            tls_cost = run_tls_cost(settings, tokens, seconds, repeats, lambda: bar.advance(task))

    def at(system: str, c: int) -> dict[str, Any]:
        return next(r for r in rows if r["system"] == system and r["concurrency"] == c)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None  # no ratio to a system that answered nothing

    vs_peer = {str(c): ratio(at("eventray", c)["rps"], at("peer", c)["rps"]) for c in CONCURRENCY}
    result = {
        "rows": rows,
        "batch_cmds_per_s": batch["cmds_per_s"],
        "batch": {**batch, "commands_per_request": BATCH},
        "overloaded": sum(r["overloaded"] for r in rows) + batch["overloaded"],
        "vs_peer_by_concurrency": vs_peer,
        "c64_fraction_of_read_limit": ratio(at("eventray", 64)["rps"], at("read_limit", 64)["rps"]),
        "p50_ms_c1": at("eventray", 1)["p50_ms"],
        "peer_p50_ms_c1": at("peer", 1)["p50_ms"],
        "p99_ms_c64": at("eventray", 64)["p99_ms"],
        "errors_c256": at("eventray", 256)["errors"],
        "goals": GOALS,
        "tls": settings.tls,
        "tls_cost": tls_cost,
        "url": url,
        "kafka_client": settings.kafka_client,
        "seconds_per_point": seconds,
        "repeats": repeats,
        "accounts": ACCOUNTS,
        "users": SUBJECTS,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "quick": args.quick,
    }
    path = write_results("graphql_commands", result)
    print_table("GraphQL commands (median of runs)", rows + [batch],
                ["system", "concurrency", "rps", "p50_ms", "p99_ms", "errors", "overloaded"])
    if tls_cost is not None:
        print_table("what TLS costs: deposit under plain uvicorn (median of runs)", tls_cost["rows"],
                    ["tls", "concurrency", "rps", "p50_ms", "p99_ms", "errors", "overloaded"])
        print(f"requests/s with TLS / without, per concurrency: {tls_cost['rps_on_over_off']}")
    print(f"eventray / peer at each concurrency: {vs_peer}; c=64 vs the read limit "
          f"{result['c64_fraction_of_read_limit']}; submitCommands x{BATCH}: {batch['cmds_per_s']} deposits/s "
          f"-> {path}")


if __name__ == "__main__":
    main()
