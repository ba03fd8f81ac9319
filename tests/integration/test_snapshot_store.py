"""SnapshotStore and migrations against a real PostgreSQL.

Each test writes under a topic of its own and deletes only that topic's rows afterwards;
migration tests run in a schema of their own that they drop. Nothing else is touched.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from eventray.platform import migrations
from eventray.platform.errors import ConfigurationError, ServiceUnavailable, WriteRejected
from eventray.platform.migrations import migrate, pending
from eventray.platform.snapshots import store as store_module
from eventray.platform.snapshots.store import Snapshot, SnapshotStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def dsn(stack_settings) -> str:
    """The stack's database, migrated."""
    url = stack_settings.dsn
    migrate(url)  # dev up migrates too; calling it again must be harmless
    return url


@pytest.fixture(scope="session")
def store(dsn: str) -> Iterator[SnapshotStore]:
    with SnapshotStore.open(dsn=dsn, max_size=4) as s:
        yield s


@pytest.fixture
def topic(dsn: str) -> Iterator[str]:
    name = f"test.snapshots.{uuid.uuid4().hex}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM eventray_snapshots WHERE topic = %s", (name,))
        conn.execute("DELETE FROM eventray_snapshot_checkpoints WHERE topic = %s", (name,))


@pytest.fixture
def schema_dsn(dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a fresh, empty schema: a database nobody migrated yet."""
    schema = f"test_migrations_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield make_conninfo(dsn, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema))
            )


def snap(i: int, *, version: int = 1, partition: int = 0, kind: str = "Account") -> Snapshot:
    return Snapshot(
        aggregate_type=kind,
        aggregate_id=f"acc-{i}",
        version=version,
        partition=partition,
        offset=100 * version + i,
        state=f"state-{i}-v{version}".encode() + bytes(range(8)),
        state_schema_version=2,
    )


def by_key(snapshots: list[Snapshot]) -> dict[tuple[str, str], Snapshot]:
    return {(s.aggregate_type, s.aggregate_id): s for s in snapshots}


# --- round trip -------------------------------------------------------------------------------


def test_save_then_load_round_trips_snapshots_and_checkpoint(store: SnapshotStore, topic: str) -> None:
    batch = [snap(i, version=1 + i % 5) for i in range(1000)] + [snap(1, kind="User")]

    assert store.save(topic, 0, batch, 1234, owner="shard-0/incarnation-1") == len(batch)

    assert by_key(store.load_partition(topic, 0)) == by_key(batch)
    assert store.load_checkpoint(topic, 0) == 1234
    recovery = store.load_recovery(topic, 0)
    assert recovery.checkpoint_offset == 1234
    assert by_key(recovery.snapshots) == by_key(batch)


def test_empty_partition_has_no_snapshots_and_no_checkpoint(store: SnapshotStore, topic: str) -> None:
    assert store.load_partition(topic, 3) == []
    assert store.load_checkpoint(topic, 3) is None
    assert store.load_recovery(topic, 3).checkpoint_offset is None


def test_load_returns_only_the_asked_partition_of_the_asked_topic(
    store: SnapshotStore, topic: str
) -> None:
    other_topic = topic + ".other"
    try:
        store.save(topic, 0, [snap(i, partition=0) for i in range(10)], 10)
        store.save(topic, 1, [snap(i, partition=1) for i in range(10, 15)], 20)
        store.save(other_topic, 0, [snap(i, partition=0, version=9) for i in range(3)], 30)

        assert {s.aggregate_id for s in store.load_partition(topic, 0)} == {f"acc-{i}" for i in range(10)}
        assert {s.aggregate_id for s in store.load_partition(topic, 1)} == {f"acc-{i}" for i in range(10, 15)}
        assert all(s.version == 9 for s in store.load_partition(other_topic, 0))
        assert (store.load_checkpoint(topic, 0), store.load_checkpoint(topic, 1)) == (10, 20)
        assert store.load_checkpoint(other_topic, 0) == 30
    finally:
        store.delete_partition(other_topic, 0)


def test_delete_partition_removes_snapshots_and_checkpoint(store: SnapshotStore, topic: str) -> None:
    store.save(topic, 0, [snap(i) for i in range(5)], 7)
    store.save(topic, 1, [snap(9, partition=1)], 8)

    assert store.delete_partition(topic, 0) == 5

    assert store.load_partition(topic, 0) == [] and store.load_checkpoint(topic, 0) is None
    assert len(store.load_partition(topic, 1)) == 1 and store.load_checkpoint(topic, 1) == 8


# --- one transaction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(Snapshot("Account", "acc-bad", -1, 0, 5, b"x"), id="negative-version"),
        pytest.param(Snapshot("Account", "acc-\x00-nul", 3, 0, 5, b"x"), id="nul-in-id"),
    ],
)
def test_a_rejected_batch_leaves_snapshots_and_checkpoint_unchanged(
    store: SnapshotStore, topic: str, bad: Snapshot
) -> None:
    before = [snap(i, version=2) for i in range(20)]
    store.save(topic, 0, before, 50)

    with pytest.raises(WriteRejected):
        store.save(topic, 0, [snap(i, version=3) for i in range(25)] + [bad], 80)

    assert by_key(store.load_partition(topic, 0)) == by_key(before)
    assert store.load_checkpoint(topic, 0) == 50


def test_a_failure_after_both_writes_rolls_both_back(
    store: SnapshotStore, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [snap(i, version=2) for i in range(20)]
    store.save(topic, 0, before, 50)
    real_upsert = store_module._upsert

    def upsert_then_fail(conn: psycopg.Connection, topic: str, batch: list[Snapshot]) -> int:
        real_upsert(conn, topic, batch)  # checkpoint and snapshots both written, not committed
        raise RuntimeError("injected failure before commit")

    monkeypatch.setattr(store_module, "_upsert", upsert_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        store.save(topic, 0, [snap(i, version=3) for i in range(25)], 80)
    monkeypatch.undo()

    assert by_key(store.load_partition(topic, 0)) == by_key(before)
    assert store.load_checkpoint(topic, 0) == 50


def test_a_snapshot_of_another_partition_is_refused_before_writing(
    store: SnapshotStore, topic: str
) -> None:
    with pytest.raises(ValueError, match="partition 1, not 0"):
        store.save(topic, 0, [snap(1, partition=0), snap(2, partition=1)], 10)
    assert store.load_partition(topic, 0) == [] and store.load_checkpoint(topic, 0) is None


# --- never backwards --------------------------------------------------------------------------


def test_an_older_version_never_overwrites_a_newer_one(store: SnapshotStore, topic: str) -> None:
    store.save(topic, 0, [snap(1, version=5), snap(2, version=5)], None)

    written = store.save(topic, 0, [snap(1, version=3), snap(2, version=6), snap(3, version=1)], None)

    assert written == 2  # acc-2 updated, acc-3 inserted, acc-1 skipped
    loaded = by_key(store.load_partition(topic, 0))
    assert loaded[("Account", "acc-1")] == snap(1, version=5)
    assert loaded[("Account", "acc-2")] == snap(2, version=6)
    assert loaded[("Account", "acc-3")] == snap(3, version=1)


def test_the_same_version_again_does_not_rewrite(store: SnapshotStore, topic: str) -> None:
    store.save(topic, 0, [snap(1, version=5)], None)
    assert store.save(topic, 0, [snap(1, version=5)], None) == 0


def test_duplicates_in_one_batch_keep_the_highest_version(store: SnapshotStore, topic: str) -> None:
    store.save(topic, 0, [snap(1, version=2), snap(1, version=7), snap(1, version=4)], None)
    assert store.load_partition(topic, 0) == [snap(1, version=7)]


def test_the_checkpoint_never_moves_backwards(store: SnapshotStore, topic: str) -> None:
    store.save(topic, 0, [snap(1, version=1)], 100)

    store.save(topic, 0, [snap(1, version=2)], 40)  # a late batch from a slower writer
    assert store.load_checkpoint(topic, 0) == 100
    assert store.load_partition(topic, 0) == [snap(1, version=2)]  # its snapshots still count

    store.save(topic, 0, [], None)
    assert store.load_checkpoint(topic, 0) == 100
    store.save(topic, 0, [], 150)
    assert store.load_checkpoint(topic, 0) == 150


# --- volume -----------------------------------------------------------------------------------


def test_a_hundred_thousand_snapshots_round_trip_fast(store: SnapshotStore, topic: str) -> None:
    n = 100_000
    batch = [
        Snapshot("Account", f"acc-{i:08d}", 3, 2, 10 * i, os.urandom(100), 1) for i in range(n)
    ]

    started = time.perf_counter()
    assert store.save(topic, 2, batch, 10 * n) == n
    saved_s = time.perf_counter() - started
    started = time.perf_counter()
    loaded = store.load_partition(topic, 2)
    loaded_s = time.perf_counter() - started

    assert by_key(loaded) == by_key(batch)
    # measured ~0.6 s and ~0.15 s on 2 cores; the bounds only catch a lost fast path
    assert saved_s < 5.0, f"save of {n} snapshots took {saved_s:.2f} s"
    assert loaded_s < 1.5, f"load of {n} snapshots took {loaded_s:.2f} s"


# --- errors at the edge -----------------------------------------------------------------------


def test_an_unreachable_server_is_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable):
        SnapshotStore.open(dsn="postgresql://eventray@127.0.0.1:1/eventray", timeout=1.0)


def test_missing_tables_say_to_run_the_migrations(schema_dsn: str) -> None:
    with SnapshotStore.open(dsn=schema_dsn) as bare:
        with pytest.raises(ConfigurationError, match="migrate"):
            bare.load_partition("t", 0)


# --- migrations -------------------------------------------------------------------------------


def test_migrate_is_idempotent(dsn: str) -> None:
    assert migrate(dsn) == []
    assert pending(dsn) == []


def test_migrate_applies_every_file_once_in_name_order(schema_dsn: str) -> None:
    every = sorted(p.name for p in migrations.MIGRATIONS_DIR.glob("*.sql"))
    assert every and pending(schema_dsn) == every

    assert migrate(schema_dsn) == every
    assert migrate(schema_dsn) == []
    with psycopg.connect(schema_dsn) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM eventray_migrations ORDER BY applied_at, name")]
    assert names == every


def test_concurrent_migrate_calls_apply_each_file_exactly_once(schema_dsn: str) -> None:
    threads = 4
    start = threading.Barrier(threads)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(schema_dsn))
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)

    assert errors == []
    every = sorted(p.name for p in migrations.MIGRATIONS_DIR.glob("*.sql"))
    assert sorted(name for r in results for name in r) == every  # applied once, by someone
    with SnapshotStore.open(dsn=schema_dsn) as migrated:
        migrated.save("t", 0, [snap(1)], 1)
        assert migrated.load_checkpoint("t", 0) == 1
