"""Choosing the Kafka client: a bad name is a typed error that says which setting to change."""

from __future__ import annotations

import pydantic
import pytest

from eventray.platform.errors import ConfigurationError
from eventray.platform.eventlog.reader import make_partitions_reader, make_reader
from eventray.platform.eventlog.writer import KAFKA_CLIENTS, TransactionalWriter, make_writer
from eventray.platform.settings import Settings


def test_an_unknown_client_is_refused_with_the_setting_to_change() -> None:
    for make in (lambda: make_writer("kafka-go", "127.0.0.1:1", "t", 0, "tx"),
                 lambda: make_reader("kafka-go", "127.0.0.1:1", "t", 0),
                 lambda: make_partitions_reader("kafka-go", "127.0.0.1:1", "t", [0])):
        with pytest.raises(ConfigurationError, match="EVENTRAY_KAFKA_CLIENT"):
            make()


def test_the_setting_accepts_only_the_two_clients(monkeypatch) -> None:
    monkeypatch.setenv("EVENTRAY_KAFKA_CLIENT", "librdkafka")
    with pytest.raises(pydantic.ValidationError, match="kafka_client"):
        Settings()
    for client in KAFKA_CLIENTS:
        monkeypatch.setenv("EVENTRAY_KAFKA_CLIENT", client)
        assert Settings().kafka_client == client


def test_each_client_builds_its_own_adapter_without_a_broker() -> None:
    # constructing is local for both (kafka-python's writer connects only in init())
    assert isinstance(make_writer("kafka-python", "127.0.0.1:1", "t", 0, "tx"), TransactionalWriter)
    rd = make_writer("confluent-kafka", "127.0.0.1:1", "t", 3, "tx-3")
    assert type(rd).__name__ == "RdKafkaTransactionalWriter" and rd.partition == 3 and not rd.usable
    reader = make_reader("confluent-kafka", "127.0.0.1:1", "t", 2)
    try:
        assert type(reader).__name__ == "RdKafkaPartitionReader" and reader.partition == 2
    finally:
        reader.close()
