"""The peer: the `eventsourcing` library's process-application system doing the same transfers.

Two process applications on PostgreSQL, each following the other (``System`` pipes
``[[Transfers, Accounts, Transfers]]``), run by the library's ``MultiThreadedRunner``:

* ``Transfers`` records ``Transfer.Requested``; on ``Account.TransferDebited`` it scores the
  movement (the same amount rule as eventray's run) and records ``Transfer.Approved`` or
  ``Transfer.Rejected``; on ``Account.TransferCredited`` / ``Account.TransferRefunded`` it
  records ``Transfer.Completed`` / ``Transfer.Compensated``;
* ``Accounts`` on ``Transfer.Requested`` debits the source (or records the refusal); on
  ``Transfer.Approved`` credits the target; on ``Transfer.Rejected`` refunds the source.

Each policy step records its new events and the processed position atomically (the library's
exactly-once processing). A client thread requests a transfer and polls until it is terminal.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.system import MultiThreadedRunner, ProcessApplication, System

from benchmarks._peer_eventsourcing import drop_schema, peer_env


class PeerTransfer(Aggregate):
    @event("Requested")
    def __init__(self, from_id: uuid.UUID, to_id: uuid.UUID, amount: int) -> None:
        self.from_id, self.to_id, self.amount = from_id, to_id, amount
        self.status = "debiting"

    @event("Approved")
    def approve(self, score: float, to_id: uuid.UUID, amount: int) -> None:
        self.status = "crediting"

    @event("Rejected")
    def reject(self, reason: str, from_id: uuid.UUID, amount: int) -> None:
        self.status = "refunding" if reason != "debit refused" else "compensated"

    @event("Completed")
    def complete(self) -> None:
        self.status = "completed"

    @event("Compensated")
    def compensate(self) -> None:
        self.status = "compensated"


class PeerAccount(Aggregate):
    @event("Opened")
    def __init__(self, balance: int) -> None:
        self.balance = balance

    @event("TransferDebited")
    def debit(self, transfer_id: uuid.UUID, amount: int) -> None:
        self.balance -= amount

    @event("TransferCredited")
    def credit(self, transfer_id: uuid.UUID, amount: int) -> None:
        self.balance += amount

    @event("TransferRefunded")
    def refund(self, transfer_id: uuid.UUID, amount: int) -> None:
        self.balance += amount

    @event("DebitRefused")
    def refuse(self, transfer_id: uuid.UUID) -> None:
        pass


class Transfers(ProcessApplication[uuid.UUID]):
    rule_limit = 10**9
    threshold = 0.9

    def request(self, from_id: uuid.UUID, to_id: uuid.UUID, amount: int) -> uuid.UUID:
        transfer = PeerTransfer(from_id, to_id, amount)
        self.save(transfer)
        return transfer.id

    def status(self, transfer_id: uuid.UUID) -> str:
        return self.repository.get(transfer_id).status

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        """Default: ignore."""

    @policy.register(PeerAccount.TransferDebited)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        transfer = self.repository.get(domain_event.transfer_id)
        score = transfer.amount / self.rule_limit
        if score > self.threshold:
            transfer.reject("fraud", transfer.from_id, transfer.amount)
        else:
            transfer.approve(score, transfer.to_id, transfer.amount)
        processing_event.collect_events(transfer)

    @policy.register(PeerAccount.DebitRefused)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        transfer = self.repository.get(domain_event.transfer_id)
        transfer.reject("debit refused", transfer.from_id, transfer.amount)
        processing_event.collect_events(transfer)

    @policy.register(PeerAccount.TransferCredited)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        transfer = self.repository.get(domain_event.transfer_id)
        transfer.complete()
        processing_event.collect_events(transfer)

    @policy.register(PeerAccount.TransferRefunded)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        transfer = self.repository.get(domain_event.transfer_id)
        transfer.compensate()
        processing_event.collect_events(transfer)


class Accounts(ProcessApplication[uuid.UUID]):
    def open(self, balance: int) -> uuid.UUID:
        account = PeerAccount(balance)
        self.save(account)
        return account.id

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        """Default: ignore."""

    @policy.register(PeerTransfer.Requested)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        account = self.repository.get(domain_event.from_id)
        if account.balance >= domain_event.amount:
            account.debit(domain_event.originator_id, domain_event.amount)
        else:
            account.refuse(domain_event.originator_id)
        processing_event.collect_events(account)

    @policy.register(PeerTransfer.Approved)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        account = self.repository.get(domain_event.to_id)
        account.credit(domain_event.originator_id, domain_event.amount)
        processing_event.collect_events(account)

    @policy.register(PeerTransfer.Rejected)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        if domain_event.reason == "debit refused":
            return
        account = self.repository.get(domain_event.from_id)
        account.refund(domain_event.originator_id, domain_event.amount)
        processing_event.collect_events(account)


def run_peer(dsn: str, *, accounts: int, concurrency: int, duration_s: float, warmup_s: float,
             seed: int) -> dict[str, Any]:
    """Run the peer system; ``concurrency`` client threads do transfers for ``duration_s``."""
    import random

    import psycopg

    schema = f"peer_sagas_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    env = peer_env(dsn, schema, pool_size=concurrency + 8)
    system = System(pipes=[[Transfers, Accounts, Transfers]])
    runner = MultiThreadedRunner(system, env=env)
    runner.start()
    try:
        transfers = runner.get(Transfers)
        accts = runner.get(Accounts)
        ids = [accts.open(10**12) for _ in range(accounts)]
        latencies: list[list[float]] = [[] for _ in range(concurrency)]
        completed = [0] * concurrency
        measuring = threading.Event()
        stop_at = time.perf_counter() + warmup_s + duration_s
        gate = threading.Barrier(concurrency + 1)

        def client(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            gate.wait()
            while time.perf_counter() < stop_at:
                a, b = rng.sample(ids, 2)
                t0 = time.perf_counter()
                tid = transfers.request(a, b, rng.randint(1, 1000))
                while True:
                    status = transfers.status(tid)
                    if status in ("completed", "compensated"):
                        break
                    time.sleep(0.005)  # polling faster only adds PostgreSQL load and GIL contention
                if measuring.is_set():
                    latencies[i].append(time.perf_counter() - t0)
                    completed[i] += status == "completed"

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        gate.wait()
        time.sleep(warmup_s)
        measuring.set()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        flat = [x for xs in latencies for x in xs]
        return {"completed": sum(completed), "elapsed_s": elapsed, "latencies": flat}
    finally:
        runner.stop()
        drop_schema(dsn, schema)
