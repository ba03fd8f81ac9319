"""The event-log adapter against a real Kafka broker (the dev stack's, via ``stack_settings``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from eventray.platform.errors import CommitFailed, ConfigurationError, Fenced
from eventray.platform.eventlog import ensure_topic, partition_for
from eventray.platform.eventlog.reader import make_partitions_reader, make_reader
from eventray.platform.eventlog.writer import KAFKA_CLIENTS, make_writer
from eventray.platform.tls import TLSFiles, kafka_options

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


#: the stack's client identity (``Settings.tls_files()``; None when EVENTRAY_TLS is off), set by ``bootstrap``
_TLS: TLSFiles | None = None


@pytest.fixture()
def bootstrap(stack_settings) -> str:
    global _TLS
    _TLS = stack_settings.tls_files()
    return stack_settings.kafka_address


def _raw() -> dict:
    """Security options of a raw kafka-python client on this stack."""
    return kafka_options(_TLS, "kafka-python")


@pytest.fixture()
def topic(bootstrap) -> str:
    name = f"test-eventlog-{uuid.uuid4().hex[:12]}"
    ensure_topic(bootstrap, name, 1, replication_factor=1, tls=_TLS)
    return name


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request) -> str:
    """Each writer contract test runs on both Kafka clients."""
    return request.param


@pytest.fixture()
def writers(kafka_client):
    made: list = []

    def make(bootstrap: str, topic: str, txid: str | None = None, **kw):
        w = make_writer(kafka_client, bootstrap, topic, 0, txid or f"tx-{topic}", commit_timeout_s=20, tls=_TLS, **kw)
        w.init()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close(timeout_s=1)


def read_all(bootstrap: str, topic: str, client: str, from_offset: int = 0) -> list[tuple[int, bytes | None, bytes]]:
    with make_reader(client, bootstrap, topic, 0, stall_timeout_s=10, tls=_TLS) as reader:
        return [rec for batch in reader.read(from_offset) for rec in batch]


def records(prefix: str, n: int, key: bytes = b"agg-1") -> list[tuple[bytes, bytes]]:
    return [(key, f"{prefix}-{i}".encode()) for i in range(n)]


def open_transaction(bootstrap: str, topic: str, values: list[bytes]) -> KafkaProducer:
    """A raw transactional producer left with an open (uncommitted) transaction."""
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"raw-{uuid.uuid4().hex}", linger_ms=0, **_raw())
    p.init_transactions()
    p.begin_transaction()
    for v in values:
        p.send(topic, value=v, key=b"agg-x", partition=0)
    p.flush()
    return p


def test_a_batch_commits_atomically_with_its_offsets(bootstrap, topic, writers, kafka_client):
    w = writers(bootstrap, topic)
    offsets = w.append_batch(records("a", 50))
    assert offsets == list(range(50))
    got = read_all(bootstrap, topic, kafka_client)
    assert [o for o, _, _ in got] == offsets
    assert [v for _, _, v in got] == [v for _, v in records("a", 50)]
    assert all(k == b"agg-1" for _, k, _ in got)
    with make_reader(kafka_client, bootstrap, topic, 0, tls=_TLS) as r:
        assert r.last_stable_offset() == offsets[-1] + 2  # the commit marker takes one offset


def test_an_aborted_batch_is_invisible_under_read_committed(bootstrap, topic, writers, kafka_client):
    # The client lets the 2 MB record through (max_request_size); the broker refuses it
    # (message.max.bytes ~1 MB) after the small records of the same transaction were written,
    # so the writer must abort a transaction that really is on the broker.
    w = writers(bootstrap, topic, batch_size=1024, max_request_size=4 * 1024 * 1024)
    first = w.append_batch(records("ok1", 3))
    doomed = records("doomed", 200) + [(b"agg-1", b"x" * (2 * 1024 * 1024))]
    with pytest.raises(ConfigurationError, match="max_request_size"):
        w.append_batch(doomed)
    assert w.usable  # the transaction was aborted cleanly: the writer goes on
    second = w.append_batch(records("ok2", 3))
    got = read_all(bootstrap, topic, kafka_client)
    assert [v for _, _, v in got] == [v for _, v in records("ok1", 3) + records("ok2", 3)]
    assert [o for o, _, _ in got] == first + second
    assert second[0] > first[-1] + 2 + 200  # the aborted records took offsets in between


def test_a_raw_aborted_transaction_is_skipped_and_the_read_ends(bootstrap, topic, writers, kafka_client):
    w = writers(bootstrap, topic)
    w.append_batch(records("before", 2))
    p = open_transaction(bootstrap, topic, [b"aborted-1", b"aborted-2"])
    p.abort_transaction()
    p.close()
    t0 = time.monotonic()
    got = read_all(bootstrap, topic, kafka_client)  # the log ends with aborted records and an abort marker
    assert time.monotonic() - t0 < 5
    assert [v for _, _, v in got] == [b"before-0", b"before-1"]


def test_zombie_writer_is_fenced(bootstrap, topic, writers, kafka_client):
    txid = f"shard-{topic}"
    old = writers(bootstrap, topic, txid)
    old.append_batch(records("old", 2))
    new = writers(bootstrap, topic, txid)  # a new incarnation: init_transactions fences the old
    with pytest.raises(Fenced):
        old.append_batch(records("zombie", 2))
    assert old.fenced and not old.usable
    with pytest.raises(Fenced):
        old.append_batch(records("zombie-again", 1))
    with pytest.raises(Fenced):
        old.recreate()  # a fenced writer must never take the partition back
    new.append_batch(records("new", 2))
    values = [v for _, _, v in read_all(bootstrap, topic, kafka_client)]
    assert values == [b"old-0", b"old-1", b"new-0", b"new-1"]


def test_a_new_incarnation_aborts_the_zombies_open_transaction(bootstrap, topic, writers, kafka_client):
    txid = f"shard-{topic}"
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=txid, linger_ms=0, **_raw())
    p.init_transactions()
    p.begin_transaction()
    p.send(topic, value=b"left-open", key=b"k", partition=0)
    p.flush()
    new = writers(bootstrap, topic, txid)
    new.append_batch(records("new", 1))
    assert [v for _, _, v in read_all(bootstrap, topic, kafka_client)] == [b"new-0"]
    p.close(timeout=0)


def test_order_is_kept_within_the_partition(bootstrap, topic, writers, kafka_client):
    w = writers(bootstrap, topic)
    expected: list[bytes] = []
    for batch in range(10):
        recs = [(f"agg-{i % 7}".encode(), f"{batch}:{i}".encode()) for i in range(100)]
        w.append_batch(recs)
        expected += [v for _, v in recs]
    got = read_all(bootstrap, topic, kafka_client)
    assert [v for _, _, v in got] == expected
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(offsets)


def test_read_stops_at_the_lso_while_a_transaction_is_open(bootstrap, topic, writers, kafka_client):
    w = writers(bootstrap, topic)
    w.append_batch(records("committed", 3))
    other = open_transaction(bootstrap, topic, [b"pending"])
    w.append_batch(records("after", 2))  # committed, but behind the open transaction
    t0 = time.monotonic()
    got = read_all(bootstrap, topic, kafka_client)
    assert time.monotonic() - t0 < 5, "the read must not wait for the open transaction"
    assert [v for _, _, v in got] == [b"committed-0", b"committed-1", b"committed-2"]
    with make_reader(kafka_client, bootstrap, topic, 0, tls=_TLS) as r:
        assert r.last_stable_offset() == 4  # 3 records + commit marker; the open one starts at 4
    other.commit_transaction()
    other.close()
    assert [v for _, _, v in read_all(bootstrap, topic, kafka_client)] == [
        b"committed-0", b"committed-1", b"committed-2", b"pending", b"after-0", b"after-1"
    ]


def test_tail_sees_new_commits_and_stops_on_the_flag(bootstrap, topic, writers, kafka_client):
    w = writers(bootstrap, topic)
    stop = threading.Event()
    seen: list[bytes] = []
    with make_reader(kafka_client, bootstrap, topic, 0, poll_timeout_ms=100, tls=_TLS) as reader:

        def consume() -> None:
            for batch in reader.tail(0, stop=stop):
                seen.extend(v for _, _, v in batch)
                if len(seen) >= 4:
                    stop.set()

        t = threading.Thread(target=consume)
        t.start()
        w.append_batch(records("live", 4))
        t.join(timeout=15)
        assert not t.is_alive()
    assert seen == [b"live-0", b"live-1", b"live-2", b"live-3"]


def test_ensure_topic_is_idempotent_and_refuses_another_partition_count(bootstrap):
    name = f"test-ensure-{uuid.uuid4().hex[:12]}"
    assert ensure_topic(bootstrap, name, 3, replication_factor=1, tls=_TLS) is True
    assert ensure_topic(bootstrap, name, 3, replication_factor=1, tls=_TLS) is False
    with pytest.raises(ConfigurationError, match="fixed at creation") as info:
        ensure_topic(bootstrap, name, 4, replication_factor=1, tls=_TLS)
    assert "EVENTRAY_PARTITIONS=3" in str(info.value)
    assert info.value.details["existing"] == 3


def test_writer_refuses_to_write_before_init(bootstrap, topic, kafka_client):
    w = make_writer(kafka_client, bootstrap, topic, 0, f"tx-{topic}", tls=_TLS)
    with pytest.raises(CommitFailed, match="init"):
        w.append_batch(records("x", 1))


_JAVA_KEYED_PRODUCER = """
import java.util.Properties;
import org.apache.kafka.clients.producer.*;
public class KeyedProducer {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        String keystore = System.getenv("KEYSTORE_PEM");  // key + chain, when the stack runs TLS
        if (keystore != null) {
            p.put("security.protocol", "SSL");
            p.put("ssl.keystore.type", "PEM");
            p.put("ssl.keystore.location", keystore);
            p.put("ssl.truststore.type", "PEM");
            p.put("ssl.truststore.location", System.getenv("TRUSTSTORE_PEM"));
        }
        p.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        p.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = 2; i < args.length; i++) {
                producer.send(new ProducerRecord<>(args[1], args[i], args[i])).get();
            }
        }
    }
}
"""


def _kafka_libs(settings) -> Path | None:
    for candidate in (
        os.environ.get("EVENTRAY_KAFKA_LIBS"),
        settings.home / f"kafka-{settings.kafka_version}" / "libs",
    ):
        if candidate and any(Path(candidate).glob("kafka-clients-*.jar")):
            return Path(candidate)
    return None


def test_partition_for_agrees_with_the_java_client(stack_settings, bootstrap, tmp_path):
    """Keyed records produced by the Java client (no partition given) land where we route them."""
    libs = _kafka_libs(stack_settings)
    # dev up put both there; their absence is a broken stack, not a reason to skip
    assert shutil.which("java") is not None, "java is missing: run `make deps`"
    assert libs is not None, "the Kafka jars are missing: run `eventray dev up`"
    partitions = 7
    name = f"test-route-{uuid.uuid4().hex[:12]}"
    ensure_topic(bootstrap, name, partitions, replication_factor=1, tls=_TLS)
    keys = [f"acc-{i}" for i in range(60)] + [uuid.uuid4().hex for _ in range(40)] + ["ü-ñ-✓"]
    src = tmp_path / "KeyedProducer.java"
    src.write_text(_JAVA_KEYED_PRODUCER)
    env = dict(os.environ)
    if _TLS is not None:  # Java's PEM keystore: the key and the certificate in one file
        keystore = tmp_path / "client-keystore.pem"
        keystore.write_bytes(_TLS.key.read_bytes() + _TLS.cert.read_bytes())
        env.update(KEYSTORE_PEM=str(keystore), TRUSTSTORE_PEM=str(_TLS.ca))
    subprocess.run(
        ["java", "-cp", f"{libs}/*", str(src), bootstrap, name, *keys],
        check=True, timeout=90, capture_output=True, env=env,
    )
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **_raw())
    tps = [TopicPartition(name, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    placed: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(placed) < len(keys) and time.monotonic() < deadline:
        for tp, recs in consumer.poll(timeout_ms=500).items():
            for r in recs:
                placed[r.key.decode()] = tp.partition
    consumer.close()
    assert len(placed) == len(keys)
    assert len(set(placed.values())) > 1
    assert {k: partition_for(k, partitions) for k in keys} == placed


def test_one_reader_of_many_partitions_pauses_seeks_and_ends_past_aborted_records(bootstrap, kafka_client):
    name = f"test-eventlog-multi-{uuid.uuid4().hex[:12]}"
    ensure_topic(bootstrap, name, 2, replication_factor=1, tls=_TLS)
    w0 = make_writer(kafka_client, bootstrap, name, 0, f"tx-{name}-0", commit_timeout_s=20, tls=_TLS)
    w1 = make_writer(kafka_client, bootstrap, name, 1, f"tx-{name}-1", commit_timeout_s=20, tls=_TLS)
    w0.init()
    w1.init()
    try:
        w0.append_batch(records("p0", 3))
        w1.append_batch(records("p1", 2))
        raw = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"raw-{uuid.uuid4().hex}", linger_ms=0, **_raw())
        raw.init_transactions()
        raw.begin_transaction()
        raw.send(name, value=b"aborted", key=b"k", partition=1)
        raw.flush()
        raw.abort_transaction()
        raw.close()
        reader = make_partitions_reader(kafka_client, bootstrap, name, [0, 1], poll_timeout_ms=200, tls=_TLS)
        try:
            assert reader.last_stable_offsets() == {0: 4, 1: 5}  # records + markers; p1: + aborted + marker
            reader.seek(0, 0)
            reader.seek(1, 0)
            reader.pause(1)
            seen: dict[int, list[bytes]] = {0: [], 1: []}
            deadline = time.monotonic() + 15
            while len(seen[0]) < 3 and time.monotonic() < deadline:
                for p, batch in reader.poll().items():
                    seen[p].extend(v for _, _, v in batch)
            assert seen == {0: [b"p0-0", b"p0-1", b"p0-2"], 1: []}  # nothing from the paused partition
            reader.resume(1)
            while time.monotonic() < deadline and (len(seen[1]) < 2 or reader.position(1) < 5):
                for p, batch in reader.poll().items():
                    seen[p].extend(v for _, _, v in batch)
            assert seen[1] == [b"p1-0", b"p1-1"]  # the aborted record is never delivered
            assert reader.position(1) == 5  # ... but the position moved past it and its marker
            assert reader.position(0) == 4
            reader.seek(0, 1)
            again: list[bytes] = []
            while len(again) < 2 and time.monotonic() < deadline:
                again.extend(v for _, _, v in reader.poll().get(0, []))
            assert again == [b"p0-1", b"p0-2"]
        finally:
            reader.close()
    finally:
        w0.close(timeout_s=1)
        w1.close(timeout_s=1)
