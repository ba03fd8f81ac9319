"""The scripted scenario of ``eventray demo``, entirely over GraphQL on HTTP (and one WebSocket).

In order, one line each: users and accounts in one ``submitCommands`` batch; a live
``events`` subscription opened on one account; deposits and withdrawals from concurrent
customers, retried by the same ``commandId`` on a ``RetryableError``, while a shard is killed
under them; the count the platform promises (every acknowledged command applied exactly once,
checked against balances and versions read with ``consistent: true``); the events the
subscription received; a rule violation; a duplicate ``commandId``; three transfers
(:mod:`eventray.serving.demo_transfers`); one query to each model family
(:mod:`eventray.serving.demo_models`); a support message read back analysed
(:mod:`eventray.serving.demo_support`); an identity card verified by the KYC saga
(:mod:`eventray.serving.demo_kyc`); then :func:`replay_while_querying`. Every id carries the
run's own prefix, so a second run on the same stack reports only itself.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console

from eventray.serving.api.principal import mint_token
from eventray.serving.demo_client import RESULT, EventSubscription, GraphQLClient, GraphQLFailed
from eventray.serving.demo_kyc import identity_verification
from eventray.serving.demo_models import query_models
from eventray.serving.demo_support import support_inbox
from eventray.serving.demo_transfers import TransferAccounts, run_transfers
from eventray.serving.settings import ServingSettings

__all__ = ["DemoReport", "Part", "run_scenario", "replay_while_querying"]

#: ``kill_shard()`` -> (the actor's name, seconds until it answered ``ready`` again)
ShardKiller = Callable[[], tuple[str, float]]


@dataclass
class Part:
    """One part of the scenario: whether its check held, and its summary."""

    name: str
    ok: bool
    summary: str


@dataclass
class DemoReport:
    commands: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    retries: int = 0
    replay_queries: int = 0
    replay_errors: int = 0
    replay_seconds: float = 0.0
    sample_account: str = ""
    parts: list[Part] = field(default_factory=list)

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    @property
    def ok(self) -> bool:
        """0 failed requests and every check held."""
        return self.failures == 0 and self.replay_errors == 0 and all(p.ok for p in self.parts)


class Reporter:
    """Prints one line per part and records it in the report."""

    def __init__(self, console: Console, report: DemoReport) -> None:
        self.console = console
        self.report = report

    def __call__(self, name: str, ok: bool, line: str, *, summary: str | None = None) -> None:
        self.report.parts.append(Part(name, ok, summary if summary is not None else line))
        mark = "[green]ok[/]    " if ok else "[bold red]FAILED[/]"
        self.console.print(f"{mark} [bold]{name}[/]: {line}", highlight=False)

    def failed(self, name: str, exc: BaseException) -> None:
        """A part that could not run: why, as its line."""
        self(name, False, f"could not run: {type(exc).__name__}: {str(exc)[:400]}")


@dataclass
class Ledger:
    """What the acknowledged commands should have done to each account."""

    balance: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    refused: int = 0
    unanswered: int = 0

    def record(self, account: str, delta: int, result: dict[str, Any] | None) -> bool:
        """Fold one command's final result in; False when it was not acknowledged."""
        kind = None if result is None else result["__typename"]
        if kind == "CommandSuccess":
            self.applied += 1
            self.balance[account] = self.balance.get(account, 0) + delta
            self.events[account] = self.events.get(account, 0) + len(result["events"] or [])  # type: ignore[index]
            return True
        if kind == "RuleViolationError":
            self.refused += 1
            return True
        self.unanswered += 1
        return False


def _token(serving: ServingSettings, subject: str, role: str) -> str:
    secret = serving.hs256_secret
    assert secret is not None, "the demo mints dev tokens; run it with the dev profile"
    return mint_token(subject, role, secret=secret, audience=serving.jwt_audience)


async def _batch(client: GraphQLClient, commands: list[dict[str, Any]]) -> int:
    results = (await client.query(f"mutation($c: [CommandInput!]!) {{ submitCommands(commands: $c) {{ {RESULT} }} }}",
                                  {"c": commands}))["submitCommands"]
    return sum(r["__typename"] == "CommandSuccess" for r in results)


async def run_scenario(url: str, serving: ServingSettings, console: Console, *, kill_shard: ShardKiller | None,
                       users: int = 20, clients: int = 16, commands_per_client: int = 100) -> DemoReport:
    """The scenario against the GraphQL endpoint ``url``; prints one line per part as it goes."""
    run = uuid.uuid4().hex[:6]
    report = DemoReport()
    say = Reporter(console, report)
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        teller = GraphQLClient(url, _token(serving, f"demo-teller-{run}", "teller"), http=http)
        owners = [f"demo-{run}-user-{i}" for i in range(users)]
        accounts = [f"demo-{run}-acct-{i}-{c}" for i in range(users) for c in ("EUR", "USD")]
        transfers = TransferAccounts(run)
        try:
            await _register(teller, owners, transfers, say)
        except (GraphQLFailed, httpx.HTTPError) as e:
            say.failed("accounts", e)
            return report  # every later part needs the accounts

        ledger = Ledger()
        watched = accounts[0]
        try:
            await _concurrent_under_a_kill(url, serving, http, teller, owners, accounts, ledger, report, say,
                                           run=run, clients=clients, commands_per_client=commands_per_client,
                                           kill_shard=kill_shard, watched=watched)
        except (GraphQLFailed, httpx.HTTPError, OSError) as e:
            say.failed("concurrent customers", e)

        for name, part in (("rule violation", _rule_violation), ("duplicate commandId", _duplicate)):
            try:
                await part(teller, accounts[0], run, say)
            except (GraphQLFailed, httpx.HTTPError, KeyError, TypeError) as e:
                say.failed(name, e)
        report.sample_account = accounts[0]

        try:
            await run_transfers(teller, transfers, say)
        except (GraphQLFailed, httpx.HTTPError, KeyError, TypeError) as e:
            say.failed("transfers", e)

        try:
            ok, line = await query_models(teller)
            say("one query to each model family", ok, line)
        except (GraphQLFailed, httpx.HTTPError, KeyError, TypeError) as e:
            say.failed("one query to each model family", e)

        customer = GraphQLClient(url, _token(serving, owners[0], "customer"), http=http)
        try:
            ok, line = await support_inbox(customer, teller, owners[0])
            say("support inbox", ok, line)
        except (GraphQLFailed, httpx.HTTPError, KeyError, TypeError) as e:
            say.failed("support inbox", e)

        kyc_user = f"demo-{run}-kyc"
        try:
            kyc_customer = GraphQLClient(url, _token(serving, kyc_user, "customer"), http=http)
            got = await identity_verification(kyc_customer, teller, kyc_user, "Ada Lovelace")
            say("identity verification", got["status"] == "VERIFIED",
                f"submitIdentityDocument (an identity card rendered here, a face beside the name) -> "
                f"{got['status']}{' ' + got['reason'] if got['reason'] else ''} after {got['waited_s']:.1f}s "
                "(KYC saga: ocr read the name, faces found one)")
        except (GraphQLFailed, httpx.HTTPError, KeyError, TypeError, TimeoutError, RuntimeError) as e:
            say.failed("identity verification", e)
        report.retries += teller.retries
    return report


async def _register(teller: GraphQLClient, owners: list[str], transfers: TransferAccounts, say: Reporter) -> None:
    batch: list[dict[str, Any]] = []
    for i, owner in enumerate(owners):
        batch.append({"registerUser": {"userId": owner, "name": f"Demo User {i} {owner[5:11]}",
                                       "email": f"user{i}.{owner[5:11]}@demo.example"}})
        for c in ("EUR", "USD"):
            batch.append({"openAccount": {"accountId": f"{owner.replace('-user-', '-acct-')}-{c}", "ownerId": owner,
                                          "currency": c}})
    batch += transfers.opening()
    t0 = time.perf_counter()
    ok = await _batch(teller, batch)
    funding = transfers.funding()
    funded = await _batch(teller, funding)
    good = ok == len(batch) and funded == len(funding)
    say("accounts", good, f"registered {len(owners) + 1} users and opened {len(owners) * 2 + 6} accounts "
        f"({ok}/{len(batch)} commands ok in one submitCommands call, then {funded}/{len(funding)} deposits; "
        f"{time.perf_counter() - t0:.2f}s)", summary=f"{ok + funded}/{len(batch) + len(funding)} commands ok")


async def _concurrent_under_a_kill(url: str, serving: ServingSettings, http: httpx.AsyncClient, teller: GraphQLClient,
                                   owners: list[str], accounts: list[str], ledger: Ledger, report: DemoReport,
                                   say: Reporter, *, run: str, clients: int, commands_per_client: int,
                                   kill_shard: ShardKiller | None, watched: str) -> None:
    """The subscription opens, the customers send (a shard dies under them), then the checks."""
    users = len(owners)
    async with EventSubscription(url, _token(serving, f"demo-watcher-{run}", "teller"), watched) as sub:
        # deposits of 1 until one arrives prove the subscription live before the customers start
        # (the ingress registers a subscription a moment after it is sent: an event before that
        # is not delivered, since a subscription starts at the live end of the log)
        t_open = time.perf_counter()
        live = False
        for _ in range(8):
            ledger.record(watched, 1, await teller.command("deposit", {"accountId": watched, "amount": 1}))
            if await sub.wait_for(1, timeout_s=5):
                live = True
                break
        say("subscription opened", live, f"events(aggregateId: {watched}) over graphql-transport-ws on {url}; "
            + (f"live after {time.perf_counter() - t_open:.1f}s" if live
               else f"no probe deposit's event arrived in 40s {sub.errors[:1]}"))

        total = clients * commands_per_client
        kill_at = total // 4
        kill: dict[str, Any] = {}
        sent = 0

        def maybe_kill() -> None:
            if kill_shard is not None and "task" not in kill and sent >= kill_at:
                kill["at"] = sent
                kill["task"] = asyncio.ensure_future(asyncio.to_thread(kill_shard))

        async def customer(index: int) -> None:
            nonlocal sent
            owner = owners[index % users]
            me = GraphQLClient(url, _token(serving, owner, "customer"), http=http)
            mine = [a for a in accounts if a.startswith(f"demo-{run}-acct-{index % users}-")]
            for n in range(commands_per_client):
                name, amount = ("deposit", 100) if n % 3 else ("withdraw", 50)
                account = mine[n % 2]
                start = time.perf_counter()
                result = None
                try:
                    result = await me.command(name, {"accountId": account, "amount": amount,
                                                     "commandId": f"demo-{run}-c{index}-{n}"})
                except (httpx.HTTPError, GraphQLFailed):
                    pass
                if not ledger.record(account, amount if name == "deposit" else -amount, result):
                    report.failures += 1
                report.latencies_ms.append((time.perf_counter() - start) * 1000)
                sent += 1
                maybe_kill()
            report.retries += me.retries

        t0 = time.perf_counter()
        await asyncio.gather(*(customer(i) for i in range(clients)))
        report.seconds = time.perf_counter() - t0
        report.commands = total
        retries = report.retries
        say("concurrent customers", report.failures == 0,
            f"{clients} customers sent {total} deposits/withdrawals: {report.commands_per_s:,.0f} commands/s, "
            f"p50 {report.percentile(0.5):.1f} ms, p99 {report.percentile(0.99):.1f} ms, {retries} retried with the "
            f"same commandId, {report.failures} failed",
            summary=f"{total} commands, {retries} retries, {report.failures} failed")

        if kill_shard is None:
            say("shard killed mid-run", False, "no shard to kill: the demo was given no way to reach Ray")
        else:
            try:
                name, back_s = await asyncio.wait_for(kill["task"], timeout=300)
                say("shard killed mid-run", True, f"ray.kill({name}) after {kill['at']} of {total} commands; Ray "
                    f"restarted it and it recovered its partitions in {back_s:.1f}s",
                    summary=f"{name}, back in {back_s:.1f}s")
            except Exception as e:  # noqa: BLE001 - the kill or the recovery failed: say which
                say.failed("shard killed mid-run", e)

        await _exactly_once(teller, accounts, ledger, say)
        # every event of the account from the first one delivered to its last, in order, once
        last = 1 + ledger.events.get(watched, 0)
        first = sub.events[0]["version"] if sub.events else last + 1
        expected = last - first + 1
        arrived = await sub.wait_for(expected, timeout_s=30)
        versions = [e["version"] for e in sub.events]
        exact = live and arrived and versions == list(range(first, last + 1))
        say("live subscription", exact and not sub.errors,
            f"{len(sub.events)} events of {watched} arrived live, in order, each once (expected {expected}: every "
            f"acknowledged command on it since the subscription went live, across the kill; versions "
            f"{versions[0] if versions else '-'}..{versions[-1] if versions else '-'})"
            + (f"; errors: {sub.errors[:1]}" if sub.errors else ""),
            summary=f"{len(sub.events)} of {expected} events")


async def _exactly_once(teller: GraphQLClient, accounts: list[str], ledger: Ledger, say: Reporter) -> None:
    """Each account's balance and version, read from its shard, against what was acknowledged."""
    reads = await asyncio.gather(*(teller.query("query($id: ID!) { account(id: $id, consistent: true) "
                                                "{ balance version } }", {"id": a}) for a in accounts))
    lost = twice = wrong_balance = 0
    for account, data in zip(accounts, reads):
        got = data["account"] or {"balance": 0, "version": 0}
        applied = int(got["version"]) - 1  # version 1 is AccountOpened
        want = ledger.events.get(account, 0)
        lost += max(0, want - applied)
        twice += max(0, applied - want)
        wrong_balance += int(got["balance"]) != ledger.balance.get(account, 0)
    acked = ledger.applied
    once = acked - lost - twice if not wrong_balance else acked - lost - twice - wrong_balance
    ok = lost == 0 and twice == 0 and wrong_balance == 0 and ledger.unanswered == 0
    say("nothing lost", ok,
        f"acknowledged {acked} commands, {once} applied exactly once, {lost} lost, {twice} applied twice "
        f"(+{ledger.refused} refused by a rule, applied 0 times; {ledger.unanswered} unanswered); "
        f"{len(accounts)} balances and versions read with consistent: true"
        + (f", {wrong_balance} balances differ" if wrong_balance else ""),
        summary=f"{acked} acknowledged, {once} exactly once, {lost} lost, {twice} twice")


async def _rule_violation(teller: GraphQLClient, acct: str, run: str, say: Reporter) -> None:
    balance = (await teller.query(f'{{ account(id: "{acct}", consistent: true) {{ balance }} }}'))["account"]["balance"]
    r = await teller.command("withdraw", {"accountId": acct, "amount": balance + 1})
    say("rule violation", r["__typename"] == "RuleViolationError",
        f"withdraw {balance + 1} from {acct} (balance {balance}) -> {r['__typename']} {r.get('code')}: "
        f"{r.get('message')}", summary=f"{r['__typename']} {r.get('code')}")


async def _duplicate(teller: GraphQLClient, acct: str, run: str, say: Reporter) -> None:
    query = "query($id: ID!) { account(id: $id, consistent: true) { balance version } }"
    before = (await teller.query(query, {"id": acct}))["account"]["balance"]
    command_id = f"demo-{run}-dup"
    first = await teller.command("deposit", {"accountId": acct, "amount": 7, "commandId": command_id})
    again = await teller.command("deposit", {"accountId": acct, "amount": 7, "commandId": command_id})
    after = (await teller.query(query, {"id": acct}))["account"]
    ok = (first.get("duplicate") is False and again.get("duplicate") is True
          and after["balance"] == before + 7 and first.get("version") == again.get("version"))
    say("duplicate commandId", ok,
        f"{command_id} sent twice: first duplicate={first.get('duplicate')} v{first.get('version')}, second "
        f"duplicate={again.get('duplicate')} v{again.get('version')}; balance {after['balance']} = {before} + 7 once",
        summary="applied once" if ok else "applied twice or not at all")


def replay_while_querying(url: str, serving: ServingSettings, account_id: str, projection: str,
                          console: Console, report: DemoReport) -> None:
    """Run ``eventray replay`` while a reader queries the projection through GraphQL."""
    token = _token(serving, "demo-reader", "teller")
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
                except (httpx.HTTPError, ValueError) as e:
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
    ok = proc.returncode == 0 and not errors
    Reporter(console, report)(
        "replay under reads", ok,
        f"eventray replay {projection} " + ("done" if proc.returncode == 0 else f"failed (exit {proc.returncode})")
        + f" in {report.replay_seconds:.1f}s; {report.replay_queries} queries during it, {report.replay_errors} failed"
        + (f" (first: {errors[0]})" if errors else ""),
        summary=f"{report.replay_seconds:.1f}s, {report.replay_queries} queries, {report.replay_errors} failed")
