"""The peer: the `eventsourcing` library on PostgreSQL doing the same deposits.

Its Application with repository get and save, snapshotting on, driven by threads.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlparse

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError


class PeerAccount(Aggregate):
    @event("Opened")
    def __init__(self, owner_id: str, currency: str) -> None:
        self.owner_id = owner_id
        self.currency = currency
        self.balance = 0

    @event("Deposited")
    def deposit(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.balance += amount


class PeerBank(Application[uuid.UUID]):
    snapshotting_intervals = {PeerAccount: 100}  # noqa: RUF012 - the library's own API

    def open_account(self, owner_id: str, currency: str) -> uuid.UUID:
        account = PeerAccount(owner_id, currency)
        self.save(account)
        return account.id

    def deposit(self, account_id: uuid.UUID, amount: int) -> None:
        account = self.repository.get(account_id)
        account.deposit(amount)
        self.save(account)


#: libpq's environment variables for the TLS parameters of a URL's query string
_LIBPQ_TLS_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
                  "sslkey": "PGSSLKEY"}


def peer_env(dsn: str, schema: str, pool_size: int) -> dict[str, str]:
    """The eventsourcing library's settings for ``dsn``.

    The library passes only host, port, database, user and password to psycopg, so the TLS
    parameters of the URL (the dev stack's ``sslmode=verify-full`` and client certificate) go to
    libpq through its environment variables, set here in this process: the peer then connects
    over the same mutual TLS as eventray does.
    """
    url = urlparse(dsn)
    for key, values in parse_qs(url.query).items():
        if key in _LIBPQ_TLS_ENV:
            os.environ[_LIBPQ_TLS_ENV[key]] = values[-1]
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_PASSWORD": url.password or "",
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_MAX_WAITING": "0",
        "CREATE_TABLE": "y",
    }


def make_bank(dsn: str, schema: str, pool_size: int) -> PeerBank:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return PeerBank(env=peer_env(dsn, schema, pool_size))


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run_load(bank: PeerBank, accounts: list[uuid.UUID], concurrency: int, duration_s: float,
             seed: int) -> dict[str, Any]:
    """``concurrency`` threads deposit into random accounts for ``duration_s``; conflicts retry."""
    import random

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    conflicts = [0] * concurrency
    stop_at = time.perf_counter() + duration_s
    start_gate = threading.Barrier(concurrency + 1)

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        mine = latencies[i]
        start_gate.wait()
        while time.perf_counter() < stop_at:
            account = rng.choice(accounts)
            amount = rng.randint(1, 100)
            t0 = time.perf_counter()
            while True:
                try:
                    bank.deposit(account, amount)
                    break
                except IntegrityError:
                    conflicts[i] += 1
            mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for xs in latencies for x in xs]
    return {"count": len(flat), "elapsed_s": elapsed, "latencies": flat, "conflicts": sum(conflicts)}
