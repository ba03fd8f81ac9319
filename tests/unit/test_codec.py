"""The event codec: round trips, upcasting of stored old events, bad records reported."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventray.platform.domain import Event
from eventray.platform.errors import ConfigurationError
from eventray.platform.eventlog import DecodedRecord, EventCodec, Undecodable, dead_letter_record
from eventray.platform.eventlog.admin import partition_for


class AccountOpened(Event, frozen=True, kw_only=True):
    account_id: str
    owner: str
    overdraft: int = 0


class MoneyDeposited(Event, frozen=True, kw_only=True):
    account_id: str
    amount: int
    note: str | None = None
    tags: tuple[str, ...] = ()


class LimitChanged(Event, frozen=True, kw_only=True):
    """Version 2: ``limit`` (an int in cents) replaced v1's ``limit_eur`` (a str like "12.50")."""

    __schema_version__ = 2
    account_id: str
    limit_cents: int


class _LimitChangedV1(Event, frozen=True, kw_only=True, tag="LimitChanged"):
    """How v1 of LimitChanged was written; only used to produce stored v1 bytes."""

    account_id: str
    limit_eur: str


def _limit_v1_to_v2(payload: dict) -> dict:
    eur, _, cents = payload.pop("limit_eur").partition(".")
    payload["limit_cents"] = int(eur) * 100 + int((cents or "0").ljust(2, "0"))
    return payload


AccountEvents = AccountOpened | MoneyDeposited | LimitChanged

CODEC = EventCodec([AccountEvents], upcasters={("LimitChanged", 1): _limit_v1_to_v2})

texts = st.text(max_size=40)
ids = st.text(min_size=1, max_size=36)
events = st.one_of(
    st.builds(AccountOpened, account_id=ids, owner=texts, overdraft=st.integers(-(2**63), 2**63 - 1)),
    st.builds(
        MoneyDeposited,
        account_id=ids,
        amount=st.integers(-(2**63), 2**64 - 1),
        note=st.none() | texts,
        tags=st.lists(texts, max_size=4).map(tuple),
    ),
    st.builds(LimitChanged, account_id=ids, limit_cents=st.integers(0, 2**40)),
)
optional_ids = st.none() | ids


@given(
    event=events,
    aggregate_id=ids,
    version=st.integers(1, 2**62),
    timestamp=st.integers(0, 2**50) | st.floats(0, 2e12, allow_nan=False),
    command_id=optional_ids,
    correlation_id=optional_ids,
    causation_id=optional_ids,
    subject=optional_ids,
)
def test_round_trip_keeps_event_and_envelope(
    event, aggregate_id, version, timestamp, command_id, correlation_id, causation_id, subject
):
    value = CODEC.encode(
        event,
        aggregate_type="Account",
        aggregate_id=aggregate_id,
        version=version,
        timestamp=timestamp,
        command_id=command_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        subject=subject,
    )
    got = CODEC.decode(value, partition=3, offset=17)
    assert isinstance(got, DecodedRecord), got
    assert got.event == event and type(got.event) is type(event)
    env = got.envelope
    assert (env.aggregate_type, env.aggregate_id, env.version) == ("Account", aggregate_id, version)
    assert env.event_type == type(event).__name__
    assert env.schema_version == type(event).__schema_version__
    assert env.timestamp == timestamp
    assert (env.command_id, env.correlation_id, env.causation_id, env.subject) == (
        command_id,
        correlation_id,
        causation_id,
        subject,
    )
    assert len(env.event_id) == 32
    assert (got.partition, got.offset) == (3, 17)


def test_defaults_fill_event_id_and_timestamp():
    value = CODEC.encode(AccountOpened(account_id="a", owner="o"), aggregate_type="Account", aggregate_id="a", version=1)
    env = CODEC.decode(value).envelope
    other = CODEC.decode(
        CODEC.encode(AccountOpened(account_id="a", owner="o"), aggregate_type="Account", aggregate_id="a", version=1)
    ).envelope
    assert env.event_id != other.event_id
    assert env.timestamp > 1_600_000_000_000  # epoch ms


def _stored_v1() -> bytes:
    """A LimitChanged as the v1 code wrote it, built with the v1 struct and a v1-only codec."""
    v1_codec = EventCodec([_LimitChangedV1])
    return v1_codec.encode(
        _LimitChangedV1(account_id="acc-1", limit_eur="12.5"),
        aggregate_type="Account",
        aggregate_id="acc-1",
        version=4,
        event_id="e" * 32,
        timestamp=1_700_000_000_000,
        command_id="cmd-1",
    )


def test_stored_v1_event_is_upcast_to_v2():
    stored = _stored_v1()
    got = CODEC.decode(stored, offset=9)
    assert isinstance(got, DecodedRecord), got
    assert got.event == LimitChanged(account_id="acc-1", limit_cents=1250)
    assert got.envelope.schema_version == 1  # the envelope says what was stored
    assert (got.envelope.version, got.envelope.command_id, got.offset) == (4, "cmd-1", 9)


def test_current_version_is_not_upcast():
    value = CODEC.encode(
        LimitChanged(account_id="a", limit_cents=5), aggregate_type="Account", aggregate_id="a", version=1
    )
    assert CODEC.decode(value).event == LimitChanged(account_id="a", limit_cents=5)


def test_missing_upcaster_is_reported():
    codec = EventCodec([AccountEvents])
    got = codec.decode(_stored_v1(), partition=1, offset=2)
    assert isinstance(got, Undecodable)
    assert "no upcaster" in got.reason and got.event_type == "LimitChanged" and got.schema_version == 1


def test_failing_upcaster_is_reported_not_raised():
    codec = EventCodec([AccountEvents], upcasters={("LimitChanged", 1): lambda p: p["nope"]})
    got = codec.decode(_stored_v1())
    assert isinstance(got, Undecodable) and "KeyError" in got.reason


def test_newer_schema_than_reader_is_reported():
    value = CODEC.encode(
        LimitChanged(account_id="a", limit_cents=5), aggregate_type="Account", aggregate_id="a", version=1
    )
    old_reader = EventCodec([_LimitChangedV1])
    got = old_reader.decode(value)
    assert isinstance(got, Undecodable) and "newer" in got.reason


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"", "bad envelope"),
        (b"\xff\x00garbage", "bad envelope"),
        (msgspec.msgpack.encode({"not": "an envelope"}), "bad envelope"),
        (msgspec.msgpack.encode(["id", "Account", "a", "one", "MoneyDeposited", 1, 0, {}]), "bad envelope"),
        (
            msgspec.msgpack.encode(["id", "Account", "a", 1, "Unknown", 1, 0, {"type": "Unknown"}]),
            "unknown event type",
        ),
        (
            msgspec.msgpack.encode(
                ["id", "Account", "a", 1, "MoneyDeposited", 1, 0, {"type": "MoneyDeposited", "account_id": "a"}]
            ),
            "bad payload",
        ),
        (
            msgspec.msgpack.encode(
                ["id", "Account", "a", 1, "MoneyDeposited", 1, 0,
                 {"type": "MoneyDeposited", "account_id": "a", "amount": "ten"}]
            ),
            "bad payload",
        ),
        (
            msgspec.msgpack.encode(
                ["id", "Account", "a", 1, "MoneyDeposited", 1, 0, {"type": "AccountOpened", "account_id": "a", "owner": "o"}]
            ),
            "does not match",
        ),
    ],
    ids=["empty", "garbage", "map", "wrong-version-type", "unknown-type", "missing-field", "wrong-field-type", "tag-mismatch"],
)
def test_bad_records_are_reported_not_raised(value, reason):
    got = CODEC.decode(value, partition=2, offset=40, key=b"a")
    assert isinstance(got, Undecodable)
    assert reason in got.reason
    assert (got.raw, got.partition, got.offset, got.key) == (value, 2, 40, b"a")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(value):
    assert isinstance(CODEC.decode(value), DecodedRecord | Undecodable)


def test_invalid_utf8_in_a_string_field_is_undecodable_not_raised():
    good = CODEC.encode(AccountOpened(account_id="a", owner="o"), aggregate_type="Account",
                        aggregate_id="zzzzzz", version=1)
    at = good.index(b"zzzzzz")
    bad = good[:at] + b"\x80" + good[at + 1:]  # same length, no longer UTF-8 (msgspec: UnicodeDecodeError)
    got = CODEC.decode(bad, partition=0, offset=3)
    assert isinstance(got, Undecodable) and "bad envelope" in got.reason
    assert [type(r) for r in CODEC.decode_many([(3, None, bad), (4, None, good)], partition=0)] == \
        [Undecodable, DecodedRecord]


def test_decode_many_keeps_order_and_positions():
    good = CODEC.encode(AccountOpened(account_id="a", owner="o"), aggregate_type="Account", aggregate_id="a", version=1)
    got = CODEC.decode_many([(5, b"a", good), (6, b"a", b"junk"), (7, b"a", good)], partition=1)
    assert [type(g).__name__ for g in got] == ["DecodedRecord", "Undecodable", "DecodedRecord"]
    assert [g.offset for g in got] == [5, 6, 7] and {g.partition for g in got} == {1}


def test_dead_letter_record_keeps_bytes_and_says_why():
    bad = CODEC.decode(b"junk", partition=2, offset=40, key=b"acc-1")
    key, value, headers = dead_letter_record(bad, source_topic="events")
    h = dict(headers)
    assert (key, value) == (b"acc-1", b"junk")
    assert h["eventray.source.topic"] == b"events"
    assert (h["eventray.source.partition"], h["eventray.source.offset"]) == (b"2", b"40")
    assert h["eventray.reason"].startswith(b"bad envelope")


def test_encoding_an_unregistered_event_is_refused():
    class Stray(Event, frozen=True):
        x: int

    with pytest.raises(ConfigurationError, match="not registered"):
        CODEC.encode(Stray(x=1), aggregate_type="A", aggregate_id="a", version=1)


def test_configuration_is_checked_eagerly():
    class Untagged(msgspec.Struct):
        x: int

    class Clash(Event, frozen=True, tag="AccountOpened"):
        y: int

    with pytest.raises(ConfigurationError, match="tagged"):
        EventCodec([Untagged])
    with pytest.raises(ConfigurationError, match="share the tag"):
        EventCodec([AccountOpened, Clash])
    with pytest.raises(ConfigurationError, match="from_version"):
        EventCodec([AccountOpened], upcasters={("AccountOpened", 1): lambda p: p})
    with pytest.raises(ConfigurationError, match="unknown event type"):
        EventCodec([AccountOpened], upcasters={("Nope", 1): lambda p: p})


# Java's Utils.toPositive(Utils.murmur2(key)) % n, values from the Java client's test vectors
# (DefaultPartitionerTest/UtilsTest) and checked against a broker in tests/integration.
@pytest.mark.parametrize(
    "key, raw_hash",
    [(b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
     (b"a-little-bit-longer-string", -1486304829), (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
     (b"abc", 479470107)],
)
def test_partition_for_matches_java_murmur2(key, raw_hash):
    for n in (1, 3, 4, 12, 100):
        assert partition_for(key, n) == (raw_hash & 0x7FFFFFFF) % n
    assert partition_for(key.decode(), 7) == partition_for(key, 7)
