"""The KYC saga on real Kafka, PostgreSQL and Ray: real shards and coordinators, a topic and a
database of its own, and fake ``ocr`` / ``faces`` services (no model deployment).

A submitted document starts its saga from the log (``IdentityDocumentSubmitted``); the fakes
read a scripted document: ``b"doc:LINE|LINE"`` is read as those text lines, a document
starting ``b"noface"`` shows no face, ``b"slow"`` takes a second to read, and ``b"hang"`` is
never answered (its steps time out).
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
import uuid

import psycopg
import pytest
import ray
import ray.cloudpickle

from eventray.aggregates.user import (
    IdentityVerified, KycStatus, RegisterUser, SubmitIdentityDocument, VerificationRejected,
)
from eventray.platform.composition import Runtime
from eventray.platform.eventlog import DecodedRecord
from eventray.platform.migrations import migrate
from eventray.platform.runtime.actors import NAMESPACE
from eventray.platform.runtime.shards import start_shards, stop_shards
from eventray.platform.sagas import composition as sagas
from eventray.platform.sagas.actor import coordinator_name
from eventray.platform.sagas.settings import SagaSettings
from eventray.platform.settings import with_database
from eventray.sagas.kyc import TERMINAL, FacesFound, Kyc, KycPolicy, TextRead

pytestmark = pytest.mark.integration

SAGA = "KYC"
POLICY = KycPolicy(step_timeout_ms=1_500, max_attempts=2, backoff_base_ms=50, backoff_max_ms=200)

# the fakes below travel to the coordinator actors by value: this module is not on their path
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


async def fake_ocr(documents: list) -> list:
    """The ``ocr`` service: the scripted lines after ``:``; never answers a batch with a ``hang`` document."""
    if any(d.image.startswith(b"hang") for d in documents):
        await asyncio.sleep(3600)
    if any(d.image.startswith(b"slow") for d in documents):
        await asyncio.sleep(1.0)
    return [TextRead(lines=tuple(d.image.partition(b":")[2].decode().split("|"))) for d in documents]


async def fake_faces(documents: list) -> list:
    """The ``faces`` service: one face, none for a ``noface`` document."""
    return [FacesFound(count=0 if d.image.startswith(b"noface") else 1) for d in documents]


@pytest.fixture()
def env(stack_settings):
    db = f"it_kyc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = with_database(stack_settings.dsn, db)
    s = stack_settings.model_copy(update={
        "database_url": dsn, "topic": f"it-kyc-{uuid.uuid4().hex[:8]}", "partitions": 2, "shards": 1,
    })
    migrate(dsn)
    rt = Runtime.load(s)
    rt.connect_ray()
    ss = SagaSettings(partitions=2, coordinators=1, poll_ms=5)
    start_shards(rt)
    # started (and recovered: the group's offsets are at the log's end) before any submission
    sagas.start_coordinators(rt, ss, SAGA, policy=POLICY, services={"ocr": fake_ocr, "faces": fake_faces})
    yield rt, ss
    sagas.stop_coordinators(rt, SAGA)
    stop_shards(rt)
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


async def send_ok(bus, commands) -> None:
    for _ in range(50):
        outs = await bus.send_many(commands)
        bad = [o for o in outs if not o.ok and not o.retryable]
        assert not bad, bad[:3]
        commands = [c for c, o in zip(commands, outs) if not o.ok]
        if not commands:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("commands kept failing retryably")


def submit(user: str, document: bytes) -> SubmitIdentityDocument:
    return SubmitIdentityDocument(aggregate_id=user, image_base64=base64.b64encode(document).decode())


async def ended(client, saga_id: str, budget_s: float = 30.0):
    """The saga's terminal state, polling its coordinator."""
    deadline = time.monotonic() + budget_s
    state = None
    while time.monotonic() < deadline:
        try:
            state = await client.get(saga_id)
        except Exception:  # noqa: BLE001 - a coordinator still starting
            state = None
        if state is not None and state.status in TERMINAL:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"saga {saga_id} did not end in {budget_s}s: {state}")


def outcomes(rt) -> dict[tuple[str, int], list[str]]:
    """(user, submission) -> the outcome events in the committed log, in order."""
    found: dict[tuple[str, int], list[str]] = {}
    for p in range(rt.settings.partitions):
        for r in rt.read_decoded(p, 0):
            if isinstance(r, DecodedRecord) and isinstance(r.event, (IdentityVerified, VerificationRejected)):
                found.setdefault((r.envelope.aggregate_id, r.event.submission), []).append(type(r.event).__name__)
    return found


async def test_kyc_verified_rejected_and_timed_out_on_the_real_stack(env) -> None:
    rt, ss = env
    bus = rt.command_bus()
    client = sagas.saga_client(rt, ss, SAGA)
    tag = uuid.uuid4().hex[:6]
    ada, bob, cy, dee = (f"{n}-{tag}" for n in ("ada", "bob", "cy", "dee"))
    await send_ok(bus, [RegisterUser(aggregate_id=ada, name="Ada Lovelace", email="ada@example.com"),
                        RegisterUser(aggregate_id=bob, name="Bob Stone", email="bob@example.com"),
                        RegisterUser(aggregate_id=cy, name="Cy Young", email="cy@example.com"),
                        RegisterUser(aggregate_id=dee, name="Dee Dee", email="dee@example.com")])
    await send_ok(bus, [submit(ada, b"doc:PASSPORT|LOVELACE|ADA"), submit(bob, b"doc:PASSPORT|ROBERT STEIN"),
                        submit(cy, b"noface:CY YOUNG")])
    states = dict(zip((ada, bob, cy), await asyncio.gather(*(ended(client, Kyc.id_of(u, 1)) for u in (ada, bob, cy)))))
    # alone: the fake holds back every document asked with a "hang" one
    await send_ok(bus, [submit(dee, b"hang")])
    states[dee] = await ended(client, Kyc.id_of(dee, 1))
    assert states[ada].status == "verified" and states[ada].faces == 1
    assert (states[bob].status, states[bob].reason) == ("rejected", "name_mismatch")
    # cy's name is read ("noface:CY YOUNG" as one line), then no face is found
    assert (states[cy].status, states[cy].reason) == ("rejected", "no_face")
    # dee's document is never read: both attempts pass their deadline, then it is rejected timed out
    assert (states[dee].status, states[dee].reason) == ("rejected", "timed_out")
    assert [s.result for s in states[dee].steps if s.step == "ocr"] == ["started", "retry", "gave_up"]
    assert all(s.image == b"" for s in states.values())  # ended sagas hold no document
    # the users' states agree, and each submission has exactly one outcome in the log
    kyc = {u: (await bus.read(u))[0].kyc for u in states}
    assert kyc == {ada: KycStatus.VERIFIED, bob: KycStatus.REJECTED, cy: KycStatus.REJECTED, dee: KycStatus.REJECTED}
    # a rejected user may submit again: submission 2 is its own saga
    await send_ok(bus, [submit(bob, b"doc:BOB|STONE")])
    again = await ended(client, Kyc.id_of(bob, 2))
    assert again.status == "verified"
    assert (await bus.read(bob))[0].kyc is KycStatus.VERIFIED
    assert outcomes(rt) == {(ada, 1): ["IdentityVerified"], (bob, 1): ["VerificationRejected"],
                            (cy, 1): ["VerificationRejected"], (dee, 1): ["VerificationRejected"],
                            (bob, 2): ["IdentityVerified"]}
    assert {s.saga_id for s in await client.by_key(bob)} == {Kyc.id_of(bob, 1), Kyc.id_of(bob, 2)}


async def test_a_coordinator_restart_neither_loses_nor_repeats_a_verification(env) -> None:
    rt, ss = env
    bus = rt.command_bus()
    client = sagas.saga_client(rt, ss, SAGA)
    tag = uuid.uuid4().hex[:6]
    ada, bob = f"ada-{tag}", f"bob-{tag}"
    await send_ok(bus, [RegisterUser(aggregate_id=ada, name="Ada Lovelace", email="ada@example.com"),
                        RegisterUser(aggregate_id=bob, name="Bob Stone", email="bob@example.com")])
    await send_ok(bus, [submit(ada, b"slow:ADA LOVELACE"), submit(bob, b"slow:ROBERT STEIN")])
    await asyncio.sleep(0.3)  # the sagas have started and are reading (a second each)
    ray.kill(ray.get_actor(coordinator_name(rt.topic, SAGA, 0), namespace=NAMESPACE), no_restart=False)
    # the new incarnation rebuilds the sagas from the saga topic and asks again
    finals = await asyncio.gather(ended(client, Kyc.id_of(ada, 1), 60), ended(client, Kyc.id_of(bob, 1), 60))
    assert [(f.status, f.reason) for f in finals] == [("verified", None), ("rejected", "name_mismatch")]
    for saga_id in (Kyc.id_of(ada, 1), Kyc.id_of(bob, 1)):
        history = await client.history(saga_id)
        assert [h["why"] for h in history].count("document submitted") == 1, history  # started once
    assert outcomes(rt) == {(ada, 1): ["IdentityVerified"], (bob, 1): ["VerificationRejected"]}


async def test_kyc_and_transfer_money_coordinators_share_the_saga_topic(env) -> None:
    """Two sagas of one app on one saga topic: neither fences the other's coordinators."""
    from eventray.aggregates.account import Deposit, OpenAccount
    from eventray.sagas.transfer_money import TransferPolicy, TransferRequest
    from eventray.serving.bank.fraud import AmountRuleScorer

    rt, ss = env
    policy = TransferPolicy(scorer="rule", fraud_threshold=0.9, rule_limit=10**9, step_timeout_ms=3_000)
    sagas.start_coordinators(rt, ss, "TransferMoney", policy=policy,
                             services={"fraud": AmountRuleScorer(limit=10**9).score})
    try:
        bus = rt.command_bus()
        kyc, transfers = sagas.saga_client(rt, ss, SAGA), sagas.saga_client(rt, ss, "TransferMoney")
        tag = uuid.uuid4().hex[:6]
        ada, a, b = f"ada-{tag}", f"a-{tag}", f"b-{tag}"
        await send_ok(bus, [RegisterUser(aggregate_id=ada, name="Ada Lovelace", email="ada@example.com"),
                            OpenAccount(aggregate_id=a, owner_id=ada, currency="EUR"),
                            OpenAccount(aggregate_id=b, owner_id=ada, currency="EUR")])
        await send_ok(bus, [Deposit(aggregate_id=a, amount=1_000), submit(ada, b"doc:ADA LOVELACE")])
        moved = await transfers.run(TransferRequest(transfer_id=f"tx-{tag}", from_account=a, to_account=b,
                                                    amount=100, currency="EUR"), 30)
        verified = await ended(kyc, Kyc.id_of(ada, 1))
        assert (moved.status, verified.status) == ("completed", "verified")
        described = [*(await kyc.describe()), *(await transfers.describe())]
        assert not any(d["fenced"] for d in described), described
    finally:
        sagas.stop_coordinators(rt, "TransferMoney")
