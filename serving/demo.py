"""The scripted scenario of ``eventray demo``, entirely over GraphQL on HTTP.

Registers users and opens accounts (one ``submitCommands`` batch), drives deposits and
withdrawals from concurrent clients, shows one rule violation and one duplicate
``commandId``, rebuilds a projection with ``eventray replay`` while a reader keeps querying
it, and returns the figures for the summary.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console

from eventray.serving.api.principal import mint_token
from eventray.serving.settings import ServingSettings

RESULT = """__typename ... on CommandSuccess { version duplicate events { type data } }
            ... on CommandError { code message } ... on RuleViolationError { rule }"""


@dataclass
class DemoReport:
    commands: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    replay_queries: int = 0
    replay_errors: int = 0
    replay_seconds: float = 0.0
    sample_account: str = ""

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class GraphQLClient:
    """Async GraphQL over HTTP with a bearer token."""

    def __init__(self, url: str, token: str, *, http: httpx.AsyncClient) -> None:
        self.url = url
        self.http = http
        self.headers = {"authorization": f"Bearer {token}"}

    async def call(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.http.post(self.url, json={"query": query, "variables": variables or {}}, headers=self.headers)
        body = r.json()
        if r.status_code != 200 or "errors" in body:
            raise RuntimeError(f"GraphQL call failed ({r.status_code}): {body}")
        return body["data"]


def _money_query(name: str) -> str:
    return f"mutation($i: {name[0].upper()}{name[1:]}Input!) {{ r: {name}(input: $i) {{ {RESULT} }} }}"


async def run_scenario(url: str, serving: ServingSettings, console: Console, *, users: int = 20,
                       clients: int = 16, commands_per_client: int = 100) -> DemoReport:
    """The scenario against the GraphQL endpoint ``url``; prints as it goes."""
    secret = serving.hs256_secret
    assert secret is not None, "the demo mints dev tokens; run it with the dev profile"
    run = uuid.uuid4().hex[:6]
    teller_token = mint_token(f"demo-teller-{run}", "teller", secret=secret, audience=serving.jwt_audience)
    report = DemoReport()
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        teller = GraphQLClient(url, teller_token, http=http)

        # 1. users and accounts, in one batch
        batch: list[dict[str, Any]] = []
        owners = [f"demo-{run}-user-{i}" for i in range(users)]
        accounts = [f"demo-{run}-acct-{i}-{c}" for i in range(users) for c in ("EUR", "USD")]
        for i, owner in enumerate(owners):
            batch.append({"registerUser": {"userId": owner, "name": f"Demo User {i} {run}",
                                           "email": f"user{i}.{run}@demo.example"}})
            for c in ("EUR", "USD"):
                batch.append({"openAccount": {"accountId": f"demo-{run}-acct-{i}-{c}", "ownerId": owner, "currency": c}})
        t0 = time.perf_counter()
        results = (await teller.call(f"mutation($c: [CommandInput!]!) {{ submitCommands(commands: $c) {{ {RESULT} }} }}",
                                     {"c": batch}))["submitCommands"]
        ok = sum(r["__typename"] == "CommandSuccess" for r in results)
        console.print(f"[green]registered[/] {users} users and opened {len(accounts)} accounts "
                      f"({ok}/{len(batch)} commands ok, one submitCommands call, {time.perf_counter() - t0:.2f}s)")

        # 2. concurrent deposits and withdrawals, each client as one customer on their own accounts
        async def customer(index: int) -> None:
            owner = owners[index % users]
            me = GraphQLClient(url, mint_token(owner, "customer", secret=secret, audience=serving.jwt_audience), http=http)
            mine = [a for a in accounts if a.startswith(f"demo-{run}-acct-{index % users}-")]
            for n in range(commands_per_client):
                name = "deposit" if n % 3 else "withdraw"
                start = time.perf_counter()
                try:
                    r = (await me.call(_money_query(name), {"i": {"accountId": mine[n % 2], "amount": 100 if n % 3 else 50}}))["r"]
                    if r["__typename"] not in ("CommandSuccess", "RuleViolationError"):
                        report.failures += 1
                except (httpx.HTTPError, RuntimeError):
                    report.failures += 1
                report.latencies_ms.append((time.perf_counter() - start) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(customer(i) for i in range(clients)))
        report.seconds = time.perf_counter() - t0
        report.commands = clients * commands_per_client
        console.print(f"[green]concurrent[/] {clients} customers sent {report.commands} deposits/withdrawals: "
                      f"{report.commands_per_s:,.0f} commands/s, p50 {report.percentile(0.5):.1f} ms, "
                      f"p99 {report.percentile(0.99):.1f} ms, {report.failures} failed")

        # 3. one rule violation
        acct = report.sample_account = accounts[0]
        balance = (await teller.call(f'{{ account(id: "{acct}", consistent: true) {{ balance }} }}'))["account"]["balance"]
        r = (await teller.call(_money_query("withdraw"), {"i": {"accountId": acct, "amount": balance + 1}}))["r"]
        console.print(f"[yellow]rule violation[/] withdraw {balance + 1} from {acct} (balance {balance}) -> "
                      f"{r['__typename']} {r.get('code')}: {r.get('message')}")

        # 4. one duplicate commandId
        command_id = f"demo-{run}-dup"
        first = (await teller.call(_money_query("deposit"), {"i": {"accountId": acct, "amount": 7, "commandId": command_id}}))["r"]
        again = (await teller.call(_money_query("deposit"), {"i": {"accountId": acct, "amount": 7, "commandId": command_id}}))["r"]
        after = (await teller.call(f'{{ account(id: "{acct}", consistent: true) {{ balance version }} }}'))["account"]
        console.print(f"[yellow]duplicate[/] commandId {command_id} sent twice: first duplicate={first['duplicate']} "
                      f"v{first['version']}, second duplicate={again['duplicate']} v{again['version']}; "
                      f"balance {after['balance']} = {balance} + 7 once")
    return report


def replay_while_querying(url: str, serving: ServingSettings, account_id: str, projection: str,
                          console: Console, report: DemoReport) -> None:
    """Run ``eventray replay`` while a reader queries the projection through GraphQL."""
    secret = serving.hs256_secret
    assert secret is not None
    token = mint_token("demo-reader", "teller", secret=secret, audience=serving.jwt_audience)
    query = {"query": f'{{ account(id: "{account_id}") {{ id balance }} }}'}
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        with httpx.Client(timeout=10, headers={"authorization": f"Bearer {token}"}) as http:
            while not stop.is_set():
                try:
                    body = http.post(url, json=query).json()
                    if body.get("errors") or not (body.get("data") or {}).get("account"):
                        errors.append(str(body)[:200])
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                report.replay_queries += 1
                time.sleep(0.02)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    console.print(f"[cyan]replay[/] eventray replay {projection} (a reader queries account {account_id} meanwhile)")
    proc = subprocess.run([sys.executable, "-m", "eventray.platform.cli", "replay", projection], check=False)
    report.replay_seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    report.replay_errors = len(errors)
    if proc.returncode != 0:
        console.print(f"[red]replay failed with exit code {proc.returncode}[/]")
    console.print(f"[cyan]replay[/] done in {report.replay_seconds:.1f}s; {report.replay_queries} queries during it, "
                  f"{report.replay_errors} failed" + (f" (first: {errors[0]})" if errors else ""))
