"""The bank's chaos workload: what ``eventray chaos monkey`` drives against it, and what it checks.

The app declares it (``App(chaos="eventray.serving.bank.chaos:workload")``). The workload opens
accounts through the command bus, then, as a user's client does, sends deposits through the
app's GraphQL ingress (``submitCommands``, :data:`BATCH` to a request) and requests TransferMoney
sagas there (``requestTransfer``) when the saga's coordinators run, each command and transfer
resent with its own id until acknowledged. On a stack without the ingress (``chaos.stack up``
without ``--graphql``) it sends the same through the command bus and the saga client. After
the faults it checks the bank's promises:

* **mismatched**: an account whose balance in the ``account_balances`` read model (caught up
  to the log's end) differs from the shard's committed state (the fold of the committed log:
  a shard's recovery replays exactly that);
* every acknowledged transfer ends (completed or compensated), money is conserved, and the
  saga history checker finds every transition and movement exactly once.

:func:`prepare` is what the chaos stack starts for it beside the shards: the read model's
runners and TransferMoney coordinators with the amount rule as the fraud check (no model needed).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from eventray.aggregates.account import Deposit, OpenAccount
from eventray.platform.chaos.monkey import (
    Acked,
    CommandSender,
    GraphQLSender,
    Ingress,
    MonkeyReport,
    ingress_of,
    projection_caught_up,
)
from eventray.platform.sagas.settings import SagaSettings
from eventray.sagas.transfer_money import (
    TERMINAL,
    TransferPolicy,
    TransferRequest,
    history_effects,
    history_movement,
)
from eventray.serving.bank.fraud import AmountRuleScorer

__all__ = ["ACCOUNTS", "BATCH", "CHAOS_POLICY", "PROJECTION", "RULE_LIMIT", "SAGA", "TRANSFERS",
           "BankWorkload", "prepare", "reachable_ingress", "workload"]

log = logging.getLogger("eventray.chaos.bank")

PROJECTION = "account_balances"
SAGA = "TransferMoney"
ACCOUNTS = 12
SEED_DEPOSIT = 1000
#: deposits per ``submitCommands`` request; transfers a worker requests at once, beside its deposits
BATCH = 64
TRANSFERS = 4
_TRANSFER = ("mutation ChaosTransfer($i: RequestTransferInput!) { requestTransfer(input: $i) { id status } }")
#: the rule scorer's limit: every chaos transfer (at most 30) scores far below the threshold
RULE_LIMIT = 10**6
#: TransferMoney's policy on the chaos stack: the rule scorer, with the timeouts and retries of
#: the deployed defaults, so that sagas outlast a broker restart
CHAOS_POLICY = TransferPolicy(fraud_threshold=0.15, scorer="rule", rule_limit=RULE_LIMIT, step_timeout_ms=5_000,
                              overall_timeout_ms=60_000, max_attempts=8, compensation_max_attempts=40,
                              backoff_base_ms=50, backoff_max_ms=2_000)


def prepare(rt: Any) -> None:
    """Start what the workload needs beside the shards: ``account_balances`` (built when it has no
    current version, else its runners) and two TransferMoney coordinators with the rule scorer."""
    from eventray.platform.projections.ensure import ensure_projections
    from eventray.platform.sagas.composition import start_coordinators

    ensure_projections(rt, names=[PROJECTION])
    start_coordinators(rt, SagaSettings(coordinators=2), SAGA, policy=CHAOS_POLICY,
                       services={"fraud": AmountRuleScorer(limit=RULE_LIMIT).score})


def reachable_ingress(rt: Any, subjects: int = 8) -> tuple[Ingress, list[str]] | None:
    """The bank's GraphQL ingress on this stack and tellers' tokens for it, or ``None`` when its
    ``/healthz`` does not answer (or the profile mints no dev tokens)."""
    import httpx

    from eventray.serving.api.principal import mint_token
    from eventray.serving.settings import ServingSettings

    serving = ServingSettings().for_app(rt)
    if serving.hs256_secret is None:  # the workload mints its own token: dev profile only
        return None
    ingress = ingress_of(rt)
    try:
        if httpx.get(ingress.health_url, verify=ingress.verify, timeout=5).status_code != 200:
            return None
    except httpx.HTTPError:
        return None
    secret, audience = serving.hs256_secret, serving.jwt_audience
    return ingress, [mint_token(f"chaos-monkey-{i}", "teller", secret=secret, audience=audience) for i in range(subjects)]


def workload(rt: Any, tag: str, rng: random.Random, saga_settings: SagaSettings) -> BankWorkload:
    """The bank's :class:`~eventray.platform.chaos.monkey.Workload` (the factory ``App.chaos`` names)."""
    return BankWorkload(rt, tag, rng, saga_settings)


class BankWorkload:
    """Deposits and transfers with deterministic ids, each retried until acknowledged.

    Args:
        rt: the bank's runtime (effective settings); Ray joined, inside a running loop.
        tag: every account id starts with it.
        rng: picks accounts and amounts.
        saga_settings: the stack's saga settings (the saga client's).
        accounts: how many accounts the deposits and transfers spread over.
    """

    projection: str | None = PROJECTION

    def __init__(self, rt: Any, tag: str, rng: random.Random, saga_settings: SagaSettings, *,
                 accounts: int = ACCOUNTS) -> None:
        from eventray.platform.sagas.composition import coordinator_group, saga_client

        self.rt, self.tag, self.rng, self.saga_settings = rt, tag, rng, saga_settings
        self.sender = CommandSender(rt.command_bus())
        # transfers only when coordinators run: without them a request could never be taken
        running = SAGA in rt.app.sagas and bool(coordinator_group(rt.topic, SAGA).live())
        self.saga: str | None = SAGA if running else None
        self.client = saga_client(rt, saga_settings, SAGA) if running else None
        self.accounts = [f"{tag}-acct-{i}" for i in range(accounts)]
        #: set by ``setup`` when the ingress answers: the monkey's kill-replica aims at it
        self.ingress: Ingress | None = None
        self.gql: GraphQLSender | None = None
        self._workers = 0
        self.deposits = 0
        self.transfer_retries = 0
        self.transfers: list[str] = []
        self.transfers_acked: list[str] = []
        self.seq = 0

    @property
    def acked(self) -> dict[str, Acked]:
        return self.sender.acked

    @property
    def retries(self) -> int:
        return self.sender.retries + self.transfer_retries + (self.gql.retries if self.gql else 0)

    async def setup(self, deadline: float) -> None:
        send = self.sender.send
        await asyncio.gather(*(send(OpenAccount(aggregate_id=a, command_id=f"{a}:open", owner_id=self.tag,
                                                currency="EUR"), deadline) for a in self.accounts))
        await asyncio.gather(*(send(Deposit(aggregate_id=a, command_id=f"{a}:seed", amount=SEED_DEPOSIT), deadline)
                               for a in self.accounts))
        self.deposits += SEED_DEPOSIT * len(self.accounts)
        found = await asyncio.to_thread(reachable_ingress, self.rt)
        if found is not None:
            self.ingress, tokens = found
            self.gql = GraphQLSender(self.ingress, tokens, acked=self.sender.acked)

    async def worker(self, stop: asyncio.Event, deadline: float) -> None:
        if self.gql is not None:
            await self._graphql_worker(self.gql, stop, deadline)
            return
        while not stop.is_set():
            self.seq += 1
            n = self.seq
            if self.client is not None and n % 5 == 0:
                await self._transfer(n, deadline)
                continue
            account = self.rng.choice(self.accounts)
            amount = self.rng.randint(1, 50)
            if await self.sender.send(Deposit(aggregate_id=account, command_id=f"{self.tag}:dep:{n}",
                                              amount=amount), deadline):
                self.deposits += amount
            await asyncio.sleep(0.01)

    async def _graphql_worker(self, gql: GraphQLSender, stop: asyncio.Event, deadline: float) -> None:
        """Deposits in batches of :data:`BATCH` by ``submitCommands`` and, on their own pace beside
        them, :data:`TRANSFERS` transfers at a time by ``requestTransfer`` (a transfer answers once
        its saga durably started, later than a deposit: it does not hold the deposits up)."""

        # each worker deposits into the accounts of one partition, so that a shard down (killed,
        # starved) holds up the requests of its own partition only, as it would a user's
        groups = [g for g in self._by_partition().values() if g]
        mine = groups[self._workers % len(groups)]
        self._workers += 1

        async def deposits() -> None:
            while not stop.is_set():
                self.seq += 1
                n = self.seq
                batch = [(f"{self.tag}:dep:{n}:{i}", self.rng.choice(mine), self.rng.randint(1, 50))
                         for i in range(BATCH)]
                done = await gql.send([(cid, "deposit", {"accountId": a, "amount": amount, "commandId": cid})
                                       for cid, a, amount in batch], deadline)
                self.deposits += sum(amount for (_, _, amount), ok in zip(batch, done, strict=True) if ok)

        async def transfers() -> None:
            while not stop.is_set():
                self.seq += 1
                n = self.seq
                await asyncio.gather(*(self._graphql_transfer(gql, f"{n}:{i}", deadline) for i in range(TRANSFERS)))

        await asyncio.gather(deposits(), *([transfers()] if self.client is not None else []))

    def _by_partition(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for a in self.accounts:
            out.setdefault(self.sender.bus.partition_of(a), []).append(a)
        return out

    async def _graphql_transfer(self, gql: GraphQLSender, n: str, deadline: float) -> bool:
        src, dst = self.rng.sample(self.accounts, 2)
        tid = f"{self.tag}:tr:{n}"
        payload = {"transferId": tid, "fromAccountId": src, "toAccountId": dst, "amount": self.rng.randint(1, 30),
                   "currency": "EUR"}
        self.transfers.append(tid)
        while time.monotonic() < deadline:
            body = await gql.post(_TRANSFER, {"i": payload}, "ChaosTransfer")
            if body is not None:
                self.transfers_acked.append(tid)
                return True
            self.transfer_retries += 1  # a coordinator or the replica restarting: the same id again
            await asyncio.sleep(0.5)
        return False

    async def _transfer(self, n: int, deadline: float) -> None:
        assert self.client is not None, "transfers run only with a saga client"
        src, dst = self.rng.sample(self.accounts, 2)
        tid = f"{self.tag}:tr:{n}"
        request = TransferRequest(transfer_id=tid, from_account=src, to_account=dst,
                                  amount=self.rng.randint(1, 30), currency="EUR")
        self.transfers.append(tid)
        while time.monotonic() < deadline:
            try:
                await self.client.request(request)
                self.transfers_acked.append(tid)
                return
            except Exception as e:  # noqa: BLE001 - a coordinator restarting: retry, requests are idempotent
                log.debug("transfer %s not accepted yet: %s", tid, e)
                self.transfer_retries += 1
                await asyncio.sleep(0.5)

    # --- the bank's invariants -----------------------------------------------------------------

    async def check(self, report: MonkeyReport) -> None:
        """Sagas ended, read model equal to the shards, money conserved, the saga history checker."""
        pending, finals = await self._sagas_ended()
        shard_balance: dict[str, int | None] = {}
        for a in self.accounts:
            found = await self.sender.bus.read(a)
            shard_balance[a] = getattr(found[0], "balance", None) if found else None
        found_money = sum(b or 0 for b in shard_balance.values())
        read_model = await asyncio.to_thread(self._read_model_balances, 120.0)
        differ = [a for a in self.accounts if read_model.get(a) != shard_balance[a]]
        if differ:  # the log's own answer tells which side drifted
            from_log = await asyncio.to_thread(self._log_balances)
            report.mismatched += [f"{a}: read model {read_model.get(a)}, shard {shard_balance[a]}, "
                                  f"log {from_log.get(a)}" for a in differ]
        history, history_valid = "not run (no saga coordinators)", True
        if self.client is not None:
            history, history_valid = await asyncio.to_thread(self._history, finals)
        conserved = self.deposits == found_money
        if self.gql is not None:
            await self.gql.close()
        path = (f"GraphQL at {self.ingress.url} (submitCommands, {BATCH} deposits a request; requestTransfer)"
                if self.ingress is not None else "the command bus and the saga client (no GraphQL ingress answered)")
        span = max(1e-9, report.span[1] - report.span[0])
        report.lines += [f"commands sent through {path}",
                         f"transfers acknowledged: {len(self.transfers_acked)} ({len(self.transfers_acked) / span:.1f}/s)",
                         f"sagas started: {len(self.transfers_acked) if self.client else 0}, "
                         f"not terminal: {len(pending)} {pending[:5]}",
                         f"money: expected {self.deposits}, found {found_money} "
                         f"({'conserved' if conserved else 'NOT conserved'})",
                         f"history checker: {history}"]
        report.domain_ok = report.domain_ok and not pending and conserved and history_valid

    async def _sagas_ended(self, timeout_s: float = 120.0) -> tuple[list[str], list[Any]]:
        """Acknowledged transfers not terminal after waiting (bounded), and the terminal states."""
        if self.client is None:
            return [], []
        deadline = time.monotonic() + timeout_s
        while True:
            states = {s.transfer_id: s for s in await self.client.all_states() if s.transfer_id.startswith(self.tag)}
            pending = [t for t in self.transfers_acked if t not in states or states[t].status not in TERMINAL]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        return pending, [states[t] for t in self.transfers_acked if t in states]

    def _read_model_balances(self, timeout_s: float) -> dict[str, int]:
        """Balances from the current ``account_balances`` version once it reached the log's end."""
        import psycopg

        from eventray.platform.projections.reads import schema_name

        version = projection_caught_up(self.rt, PROJECTION, timeout_s)
        if version is None:
            return {}
        with psycopg.connect(self.rt.settings.dsn) as conn:
            rows = conn.execute(f'SELECT account_id, balance FROM "{schema_name(PROJECTION, version)}".accounts '
                                "WHERE account_id = ANY(%s)", (self.accounts,)).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def _log_balances(self) -> dict[str, int]:
        """The balance each account's last money event in the committed log leaves."""
        out: dict[str, int] = {}
        for p in range(self.rt.settings.partitions):
            for record in self.rt.read_decoded(p, 0):
                env = getattr(record, "envelope", None)
                after = getattr(getattr(record, "event", None), "balance_after", None)
                if env is not None and after is not None and env.aggregate_id.startswith(self.tag):
                    out[env.aggregate_id] = after  # log order: the last one stands
        return out

    def _history(self, finals: list[Any]) -> tuple[str, bool]:
        from eventray.platform.sagas.composition import saga_topic
        from eventray.platform.sagas.history import check_queue, saga_run_history

        rt, ss = self.rt, self.saga_settings
        ops, transition_errors = saga_run_history(
            bootstrap=rt.settings.kafka_address, event_topic=rt.topic, partitions=rt.settings.partitions,
            saga_topic=saga_topic(rt, ss), saga_partitions=ss.partitions, acked_starts=self.transfers_acked,
            terminal={s.transfer_id: s for s in finals}, codec=rt.codec, movement=history_movement,
            effects=history_effects, tls=rt.settings.tls_files())
        history = check_queue(ops)
        history.transition_errors = transition_errors
        return history.summary(), history.valid
