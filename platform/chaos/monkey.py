"""``eventray chaos monkey``: seeded random faults under a workload, then the invariants.

The workload opens accounts and deposits into them through the command bus (each command
retried with its own ``command_id`` until acknowledged: idempotency makes that safe), and runs
TransferMoney sagas between them when coordinators run. Meanwhile a schedule drawn from
``random.Random(seed)`` injects the faults of :mod:`.faults`, one at a time. At the end:

* **lost**: an acknowledged command whose event is not in the committed log;
* **duplicated**: a command whose events the log holds more than once;
* **mismatched**: an account whose balance in the ``account_balances`` read model (caught up
  to the log's end) differs from the shard's committed state, or from the acknowledged
  deposits and transfers;
* sagas not terminal, money not conserved, and the saga history checker's findings.

The last line is ``N faults, L lost, D duplicated, M mismatched``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from eventray.platform.chaos import faults
from eventray.platform.devstack.state import effective_settings
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.chaos.monkey")

KINDS = ("kill-shard", "kill-runner", "kill-coordinator", "pause-kafka", "restart-kafka",
         "restart-postgres", "delay-kafka")
PROJECTION = "account_balances"


@dataclass
class MonkeyReport:
    """The outcome of a run."""

    faults: list[faults.FaultResult] = field(default_factory=list)
    fault_errors: list[str] = field(default_factory=list)
    skipped_kinds: dict[str, str] = field(default_factory=dict)
    acked: int = 0
    retries: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    sagas_started: int = 0
    sagas_not_terminal: list[str] = field(default_factory=list)
    money_expected: int = 0
    money_found: int = 0
    history: str = "not run (no saga coordinators)"
    history_valid: bool = True

    def slowest(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in self.faults:
            out[f.kind] = max(out.get(f.kind, 0.0), f.recovered_s)
        return out

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched or self.sagas_not_terminal
                    or self.money_expected != self.money_found or not self.history_valid or self.fault_errors)

    def closing_line(self) -> str:
        return (f"{len(self.faults)} faults, {len(self.lost)} lost, {len(self.duplicated)} duplicated, "
                f"{len(self.mismatched)} mismatched")

    def render(self) -> str:
        lines = [f"faults injected: {len(self.faults)}"]
        for kind, n in sorted(Counter(f.kind for f in self.faults).items()):
            lines.append(f"  {kind:18s} x{n:<3d} slowest recovery {self.slowest()[kind]:.2f}s")
        for kind, why in self.skipped_kinds.items():
            lines.append(f"  {kind:18s} skipped: {why}")
        lines += [f"fault errors: {len(self.fault_errors)}" + "".join(f"\n  {e}" for e in self.fault_errors[:5]),
                  f"acknowledged commands: {self.acked} ({self.retries} retries)",
                  f"acknowledged commands lost: {len(self.lost)} {self.lost[:5]}",
                  f"commands applied twice: {len(self.duplicated)} {self.duplicated[:5]}",
                  f"projection mismatches: {len(self.mismatched)} {self.mismatched[:5]}",
                  f"sagas started: {self.sagas_started}, not terminal: {len(self.sagas_not_terminal)} "
                  f"{self.sagas_not_terminal[:5]}",
                  f"money: expected {self.money_expected}, found {self.money_found} "
                  f"({'conserved' if self.money_expected == self.money_found else 'NOT conserved'})",
                  f"history checker: {self.history}",
                  self.closing_line()]
        return "\n".join(lines)


def available_kinds(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The fault kinds this stack supports now, and why the others are skipped."""
    import ray

    faults._connect(settings)
    names = [e["name"] for e in ray.util.list_named_actors(all_namespaces=True)]
    skipped: dict[str, str] = {}
    if not any(n.startswith(f"saga:{settings.topic}:") for n in names):
        skipped["kill-coordinator"] = "no saga coordinators run on this topic"
    if not any(n.startswith(f"projection:{settings.topic}:{PROJECTION}:") for n in names):
        skipped["kill-runner"] = f"no {PROJECTION} runners run on this topic"
    why = faults.delay_available(settings)
    if why:
        skipped["delay-kafka"] = why
    return [k for k in KINDS if k not in skipped], skipped


def inject(settings: Settings, kind: str, rng: random.Random) -> faults.FaultResult:
    """One fault of ``kind`` with parameters drawn from ``rng``."""
    if kind == "kill-shard":
        return faults.kill_shard(settings, rng=rng)
    if kind == "kill-runner":
        return faults.kill_runner(settings, PROJECTION, rng=rng)
    if kind == "kill-coordinator":
        return faults.kill_coordinator(settings, rng=rng)
    if kind == "pause-kafka":
        return faults.pause_kafka(settings, rng.uniform(1.0, 5.0))
    if kind == "restart-kafka":
        return faults.restart_kafka(settings)
    if kind == "restart-postgres":
        return faults.restart_postgres(settings)
    if kind == "delay-kafka":
        return faults.delay_kafka(settings, rng.choice((50, 200, 500)), rng.uniform(2.0, 6.0))
    raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")


class _Workload:
    """Deposits and transfers with deterministic ids, each retried until acknowledged."""

    def __init__(self, settings: Settings, tag: str, accounts: int, rng: random.Random,
                 saga_client: Any | None) -> None:
        from eventray.platform import composition

        self.bus = composition.command_bus(settings)
        self.tag, self.rng, self.saga = tag, rng, saga_client
        self.accounts = [f"{tag}-acct-{i}" for i in range(accounts)]
        self.acked: dict[str, str] = {}  # command_id -> aggregate id
        self.deposits = 0
        self.retries = 0
        self.transfers: list[str] = []
        self.transfers_acked: list[str] = []
        self.seq = 0

    async def send(self, command: Any, deadline: float) -> bool:
        while True:
            outcome = await self.bus.send(command)
            if outcome.ok:
                self.acked[command.command_id] = command.aggregate_id
                return True
            error = outcome.error
            from eventray.platform.errors import Retryable

            if not isinstance(error, Retryable):
                raise RuntimeError(f"{command.command_id}: {outcome.error_type}: {outcome.error_message}")
            if time.monotonic() > deadline:
                return False
            self.retries += 1
            await asyncio.sleep(0.2)

    async def setup(self, deadline: float) -> None:
        from eventray.aggregates.account import Deposit, OpenAccount

        await asyncio.gather(*(self.send(OpenAccount(aggregate_id=a, command_id=f"{a}:open", owner_id=self.tag,
                                                     currency="EUR"), deadline) for a in self.accounts))
        await asyncio.gather(*(self.send(Deposit(aggregate_id=a, command_id=f"{a}:seed", amount=1000), deadline)
                               for a in self.accounts))
        self.deposits += 1000 * len(self.accounts)

    async def worker(self, stop: asyncio.Event, hard_deadline: float) -> None:
        from eventray.aggregates.account import Deposit

        while not stop.is_set():
            self.seq += 1
            n = self.seq
            if self.saga is not None and n % 5 == 0:
                await self._transfer(n, hard_deadline)
                continue
            account = self.rng.choice(self.accounts)
            amount = self.rng.randint(1, 50)
            if await self.send(Deposit(aggregate_id=account, command_id=f"{self.tag}:dep:{n}", amount=amount),
                               hard_deadline):
                self.deposits += amount
            await asyncio.sleep(0.01)

    async def _transfer(self, n: int, deadline: float) -> None:
        from eventray.sagas.transfer_money import TransferRequest

        src, dst = self.rng.sample(self.accounts, 2)
        tid = f"{self.tag}:tr:{n}"
        request = TransferRequest(transfer_id=tid, from_account=src, to_account=dst,
                                  amount=self.rng.randint(1, 30), currency="EUR")
        self.transfers.append(tid)
        assert self.saga is not None, "transfers run only with a saga client"
        while time.monotonic() < deadline:
            try:
                await self.saga.request(request)
                self.transfers_acked.append(tid)
                return
            except Exception as e:  # noqa: BLE001 - a coordinator restarting: retry, requests are idempotent
                log.debug("transfer %s not accepted yet: %s", tid, e)
                self.retries += 1
                await asyncio.sleep(0.5)


async def _run(settings: Settings, *, duration_s: float, seed: int, report: MonkeyReport,
               out: Any) -> None:
    from eventray.platform.sagas import composition as saga_composition
    from eventray.platform.sagas.settings import SagaSettings

    rng = random.Random(seed)
    kinds, report.skipped_kinds = available_kinds(settings)
    eff = effective_settings(settings)
    saga_settings = SagaSettings()
    client = None
    if "kill-coordinator" in kinds:
        client = saga_composition.saga_client(eff, saga_settings)
    tag = f"monkey{seed}x{int(time.time())}"
    work = _Workload(eff, tag, 12, random.Random(seed + 1), client)
    await work.setup(time.monotonic() + 120)
    stop = asyncio.Event()
    t_end = time.monotonic() + duration_s
    hard = t_end + 180
    workers = [asyncio.create_task(work.worker(stop, hard)) for _ in range(4)]
    # one fault at a time, every fault kind once before any repeats, with a pause between
    order: list[str] = []
    while time.monotonic() < t_end - 3:
        if not order:
            order = kinds[:]
            rng.shuffle(order)
        kind = order.pop()
        try:
            result = await asyncio.to_thread(inject, settings, kind, rng)
            report.faults.append(result)
            out(f"  {kind:18s} {result.target}: back after {result.recovered_s:.2f}s {result.detail}")
        except Exception as e:  # noqa: BLE001 - reported: a fault that could not be injected or healed
            report.fault_errors.append(f"{kind}: {type(e).__name__}: {e}")
            out(f"  {kind:18s} FAILED: {e}")
        await asyncio.sleep(min(max(0.0, t_end - time.monotonic()), rng.uniform(1.0, 4.0)))
    stop.set()
    await asyncio.gather(*workers)
    report.acked, report.retries = len(work.acked), work.retries
    await _check(eff, work, report, client, saga_settings)


async def _check(settings: Settings, work: _Workload, report: MonkeyReport, client: Any,
                 saga_settings: Any) -> None:
    from eventray.platform import composition

    # the committed log: each acknowledged command's events, exactly once
    per_command: Counter[str] = Counter()
    balance_from_log: dict[str, int] = defaultdict(int)
    for p in range(settings.partitions):
        records: list[Any] = await asyncio.to_thread(lambda p=p: list(composition.read_decoded(settings, p, 0)))  # type: ignore[misc]
        for record in records:
            env = getattr(record, "envelope", None)
            if env is None or not env.aggregate_id.startswith(work.tag):
                continue
            per_command[env.command_id] += 1
            after = getattr(record.event, "balance_after", None)
            if after is not None:  # money events carry the balance they leave (read in log order)
                balance_from_log[env.aggregate_id] = after
    report.lost = sorted(c for c in work.acked if per_command[c] == 0)
    report.duplicated = sorted(c for c, n in per_command.items() if n > 1 and not c.startswith("saga"))
    # sagas: wait until terminal (bounded), then conservation and the history checker
    finals: list[Any] = []
    if client is not None:
        from eventray.sagas.transfer_money import TERMINAL

        report.sagas_started = len(work.transfers_acked)
        deadline = time.monotonic() + 120
        while True:
            states = {s.transfer_id: s for s in await client.all_states() if s.transfer_id.startswith(work.tag)}
            pending = [t for t in work.transfers_acked if t not in states or states[t].status not in TERMINAL]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        report.sagas_not_terminal = pending
        finals = [states[t] for t in work.transfers_acked if t in states]
    # shard state vs read model vs the acknowledged work
    shard_balance = {}
    for a in work.accounts:
        found = await work.bus.read(a)
        shard_balance[a] = getattr(found[0], "balance", None) if found else None
    report.money_expected = work.deposits
    report.money_found = sum(b or 0 for b in shard_balance.values())
    read_model = await asyncio.to_thread(_read_model_balances, settings, work.accounts, 120.0)
    for a in work.accounts:
        # the shard's state is the fold of the committed log (its recovery replays exactly that)
        if read_model.get(a) != shard_balance[a]:
            report.mismatched.append(f"{a}: read model {read_model.get(a)}, shard {shard_balance[a]}, "
                                     f"log {balance_from_log[a]}")
    if client is not None:
        from eventray.platform.sagas import composition as saga_composition
        from eventray.platform.sagas.history import check_queue, saga_run_history

        ops, transition_errors = await asyncio.to_thread(
            saga_run_history, bootstrap=settings.kafka_address, event_topic=settings.topic,
            partitions=settings.partitions, saga_topic=saga_composition.saga_topic(settings, saga_settings),
            saga_partitions=saga_settings.partitions, acked_starts=work.transfers_acked,
            terminal={s.transfer_id: s for s in finals})
        history = check_queue(ops)
        history.transition_errors = transition_errors
        report.history, report.history_valid = history.summary(), history.valid


def _read_model_balances(settings: Settings, accounts: list[str], timeout_s: float) -> dict[str, int | None]:
    """Balances from the current account_balances version once its runners reached the log's end."""
    import psycopg

    from eventray.platform.projections.replay import LogEnds
    from eventray.platform.projections.store import ProjectionStore

    store = ProjectionStore(settings.dsn)
    ends = LogEnds(settings.kafka_address, settings.topic, settings.partitions)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            version = store.current_version(PROJECTION)
            heads = ends()
            offsets = store.load_offsets(PROJECTION, version) if version is not None else {}
            if version is not None and all(offsets.get(p, 0) >= h for p, h in heads.items()):
                break
            if time.monotonic() > deadline:
                log.warning("%s did not catch up in %.0fs: %s vs %s", PROJECTION, timeout_s, offsets, heads)
                break
            time.sleep(0.5)
        schema = f"proj_{PROJECTION}_v{version}"
        with psycopg.connect(settings.dsn) as conn:
            rows = conn.execute(f'SELECT account_id, balance FROM "{schema}".accounts WHERE account_id = ANY(%s)',
                                (accounts,)).fetchall()
        return {r[0]: int(r[1]) for r in rows}
    finally:
        ends.close()


def run(settings: Settings, *, duration_s: float, seed: int, out: Any = print) -> MonkeyReport:
    """Run the monkey against the stack of ``settings`` (configured, not effective, settings)."""
    report = MonkeyReport()
    out(f"chaos monkey: {duration_s:.0f}s, seed {seed}, stack {settings.home}")
    asyncio.run(_run(settings, duration_s=duration_s, seed=seed, report=report, out=out))
    out(report.render())
    return report
