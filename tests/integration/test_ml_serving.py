"""ML deployments on a real Ray Serve: batching, typed errors, promotion under load, alerts, the
support inbox, autoscaling.

One ML application per test session (fixed at one replica per model, so batch sizes are
observable), and one separate application for the autoscaling test with the CI settings.
"""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

from eventray.platform.errors import (
    EmptyText, NonFiniteInput, TextTooLong, UnknownModel, UnknownModelVersion, WrongInputShape,
)
from eventray.platform.ml.datasets import simulate_movements
from eventray.platform.ml.pretrained import import_pretrained
from eventray.platform.ml.registry import promote
from eventray.platform.ml.training import anomaly_eval, train_all
from eventray.platform.settings import Settings

APP = f"eventray-ml-test-{os.getpid()}"


@pytest.fixture(scope="session")
def ml_settings(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    model_dir = tmp_path_factory.mktemp("ml-models")
    train_all(model_dir)
    train_all(model_dir, version="2", seed=1, names=("anomaly",))
    import_pretrained(model_dir)  # faces, objects, ocr, entities: `eventray models import`
    return stack_settings.model_copy(update={
        "model_dir": model_dir, "ml_app_name": APP, "ml_min_replicas": 1, "ml_max_replicas": 1,
        "ml_max_text_chars": 500, "ml_max_rows_per_request": 1024,
    })


@pytest.fixture(scope="session")
def ml_app(ml_settings: Settings, ray_address: str):
    import ray
    from ray import serve

    from eventray.serving.models import deploy

    if not ray.is_initialized():
        ray.init(address=ray_address, namespace="eventray", logging_level="WARNING", log_to_driver=False)
    deploy(ml_settings)
    yield ml_settings
    serve.delete(APP)


@pytest.fixture
def client(ml_app: Settings):
    from eventray.serving.models import MLClient

    return MLClient.connect(ml_app)


async def test_every_model_answers_through_serve(client):
    from eventray.serving.models import resolvers

    scored = await resolvers.score_movement(client, amount=25.0, hour=13.0, secondsSinceLast=3600, velocity24h=2)
    assert scored["anomaly"] is False and scored["modelVersion"] == "1"
    text = await resolvers.classify_text(client, text="The café in Zürich was wonderful and great")
    assert text["label"] == "positive" and any(k["term"] == "zürich" for k in text["keywords"])
    from sklearn.datasets import load_digits

    digits = load_digits()
    digit = await resolvers.classify_digit(client, pixels=digits.data[7].tolist())
    assert digit["digit"] == digits.target[7]
    recs = await resolvers.recommend(client, userId="user-0003", first=4)
    assert len(recs) == 4 and recs[0]["score"] >= recs[-1]["score"]
    models = await resolvers.models(client)
    anomaly = next(m for m in models if m["name"] == "anomaly")
    assert anomaly["default"] == "1" and [v["version"] for v in anomaly["versions"]] == ["1", "2"]


async def test_the_text_and_image_analyses_answer_through_serve_and_survive_bad_input(client):
    import base64
    import io

    import skimage.data as skdata
    from PIL import Image

    from eventray.platform.errors import InvalidImage
    from eventray.serving.models import resolvers

    def png(rgb: np.ndarray) -> str:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode()

    text = ("Shares in the London bank rose sharply after it reported record profits. Its chief executive, "
            "Sarah Jones, said the results were excellent. Analysts in New York expect a higher dividend.")
    got = await resolvers.analyze_text(client, text=text, summarySentences=1)
    assert got["topic"]["label"] == "business" and got["sentiment"]["label"] == "positive", got
    assert ("Sarah Jones", "PERSON") in {(e["text"], e["label"]) for e in got["entities"]}
    assert len(got["summary"]) == 1 and got["summary"][0] in text
    image = await resolvers.analyze_image(client, imageBase64=png(skdata.astronaut()))
    assert [f["label"] for f in image["faces"]] == ["face"] and image["profile"]["people"] >= 1
    # bad input reaches each replica and gets a typed error; the replicas go on serving
    for model in ("faces", "objects", "ocr"):
        with pytest.raises(InvalidImage):
            await client.predict(model, b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(EmptyText):
        await client.predict("entities", "")
    with pytest.raises(TextTooLong):
        await client.predict("topics", "word " * 200)
    coffee = await resolvers.analyze_image(client, imageBase64=png(skdata.coffee()))
    assert coffee["faces"] == [] and coffee["profile"]["faces"] == 0
    assert (await client.predict("entities", "Grace Hopper visited Paris."))["entities"][0]


async def test_concurrent_requests_are_batched(client):
    rows = np.random.default_rng(3).normal(size=(64, 4)).astype(np.float32)
    outs = await asyncio.gather(*(client.predict("anomaly", rows[i:i + 1]) for i in range(64)))
    sizes = [o["batch_requests"] for o in outs]
    assert max(sizes) > 1, sizes
    stats = await client.stats("anomaly")
    assert any(size > 1 for size in stats["batch_sizes"]), stats["batch_sizes"]


@pytest.mark.parametrize(("model", "payload", "error"), [
    ("anomaly", [[1.0, 2.0, 3.0]], WrongInputShape),
    ("anomaly", [[1.0, float("nan"), 3.0, 4.0]], NonFiniteInput),
    ("digits", [[0.0] * 63], WrongInputShape),
    ("sentiment", "", EmptyText),
    ("sentiment", "ü" * 501, TextTooLong),
])
async def test_bad_inputs_get_typed_errors_through_serve(client, model, payload, error):
    with pytest.raises(error) as e:
        await client.predict(model, payload)
    assert e.value.code.startswith("MODEL_INPUT") and e.value.message


async def test_unknown_model_and_version(client, ml_app):
    from ray import serve

    from eventray.serving.models.deployment import deployment_name

    with pytest.raises(UnknownModel):
        await client.predict("nope", [[1, 2, 3, 4]])
    with pytest.raises(UnknownModelVersion):
        await client.predict("anomaly", [[1, 2, 3, 4]], version="9")
    # the replica checks too, for callers that route by hand
    raw = serve.get_deployment_handle(deployment_name("anomaly"), app_name=APP)
    with pytest.raises(UnknownModelVersion):
        await raw.options(multiplexed_model_id="9").remote([[1, 2, 3, 4]])


async def test_promotion_while_requests_flow_loses_nothing(client, ml_app):
    rows = np.random.default_rng(5).normal(size=(8, 4)).astype(np.float32)
    versions: list[str] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def load():
        while not stop.is_set():
            try:
                versions.append((await client.predict("anomaly", rows))["version"])
            except Exception as e:  # noqa: BLE001 - counted: the test fails on any
                errors.append(e)

    workers = [asyncio.create_task(load()) for _ in range(16)]
    try:
        await asyncio.sleep(1.5)
        promote(ml_app.models_dir, "anomaly", "2")
        promoted_at = len(versions)
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await asyncio.gather(*workers)
        promote(ml_app.models_dir, "anomaly", "1")
    assert not errors, errors[:3]
    assert "1" in versions[:promoted_at] and versions[-50:] == ["2"] * 50
    assert len(versions) > 100


async def test_alerts_flag_seeded_anomalies(client):
    from eventray.serving.models import AlertScorer

    labeled = simulate_movements(seed=4242, accounts=80, days=21)
    alerts = await AlertScorer(client=client).score([lm.movement for lm in labeled])
    flags = np.array([a.flagged for a in alerts])
    truth = np.array([lm.anomalous for lm in labeled])
    quality = anomaly_eval(flags, truth)
    print(f"alerts: precision {quality['precision']:.3f} recall {quality['recall']:.3f} "
          f"on {int(quality['positives'])} seeded anomalies in {len(labeled)} movements")
    assert truth.sum() >= 30
    assert quality["precision"] >= 0.8 and quality["recall"] >= 0.8


def _running(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    return status.deployments[deployment].replica_states.get("RUNNING", 0)


async def test_the_support_inbox_is_the_log_analysed_by_the_deployed_models(ml_app, stack_settings):
    """Messages sent through the shards, applied by the support_inbox runners (text models on
    Serve): the rows equal the models' own analysis of each body, a body longer than this
    session's model limit (500 characters, within the command's 2,000) is stored with the models'
    error, and the read API returns them newest first."""
    import uuid

    import psycopg
    from psycopg_pool import AsyncConnectionPool

    from eventray.aggregates.user import RegisterUser, SendSupportMessage
    from eventray.platform.composition import Runtime
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.actor import stop_topic_runners
    from eventray.platform.projections.cli import status
    from eventray.platform.projections.replay import replay
    from eventray.platform.runtime.shards import start_shards, stop_shards
    from eventray.platform.settings import with_database
    from eventray.projections import queries
    from eventray.serving.models import MLClient
    from eventray.serving.models.resolvers import analyze_texts

    db = f"it_inbox_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    s = ml_app.model_copy(update={"database_url": with_database(stack_settings.dsn, db),
                                  "topic": f"it-inbox-{uuid.uuid4().hex[:8]}", "partitions": 2, "shards": 1})
    migrate(s.dsn)
    rt = Runtime.load(s)
    start_shards(rt)
    try:
        bus = rt.command_bus()
        bodies = {"ada": "My card was charged twice at the Lisbon airport on Monday. Please refund me soon.",
                  "grace": "Thanks to Grace Hopper in your Paris branch, the new account works great!",
                  "long": "Why was my loan refused? " * 25}  # 625 characters: the models' limit here is 500
        for user in bodies:
            assert (await bus.send(RegisterUser(aggregate_id=f"u-{user}", name=user, email=f"{user}@x.example"))).ok
        sent = {}
        for user, body in bodies.items():
            out = await bus.send(SendSupportMessage(aggregate_id=f"u-{user}", body=body))
            assert out.ok, out
            sent[f"u-{user}/{out.version}"] = body.strip()
        assert not (await bus.send(SendSupportMessage(aggregate_id="u-nobody", body="hello there"))).ok
        await asyncio.to_thread(replay, rt, "support_inbox", timeout_s=240)
        deadline = time.monotonic() + 120
        while next(r for r in status(rt) if r["name"] == "support_inbox" and r["current"])["lag"] > 0:
            assert time.monotonic() < deadline, "support_inbox did not catch up"
            await asyncio.sleep(0.2)
        async with AsyncConnectionPool(s.dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
            rows = await queries.support_messages(pool, first=10)
            ada_only = await queries.support_messages(pool, user_id="u-ada", first=10)
        assert {r.message_id: r.body for r in rows} == sent
        assert [r.user_id for r in ada_only] == ["u-ada"]
        assert [r.sent_at for r in rows] == sorted((r.sent_at for r in rows), reverse=True)
        by_id = {r.message_id: r for r in rows}
        refused = next(r for r in rows if r.user_id == "u-long")
        assert refused.analysis_error == "MODEL_INPUT_TEXT_TOO_LONG" and refused.topic is None and refused.entities == []

        # a fold of the log: each analysed row is what the deployed models say of its body alone
        client = MLClient.connect(s, models=("sentiment", "topics", "entities"))
        for message, body in sent.items():
            if by_id[message].analysis_error is not None:
                continue
            (want,) = await analyze_texts(client, [body])
            got = by_id[message]
            assert got.topic["label"] == want["topic"]["label"]
            assert got.topic["score"] == pytest.approx(want["topic"]["score"], abs=1e-5)
            assert got.sentiment["label"] == want["sentiment"]["label"]
            assert got.entities == want["entities"] and got.summary == want["summary"]
            assert got.model_versions == want["modelVersions"]
        ada = by_id[next(m for m in sent if m.startswith("u-ada/"))]
        assert ("Lisbon", "GPE") in {(e["text"], e["label"]) for e in ada.entities}
        assert ada.topic["label"] in ("business", "entertainment", "politics", "sport", "tech")
    finally:
        stop_topic_runners(rt)
        stop_shards(rt)
        with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


async def test_autoscaling_1_to_3_and_back(ml_settings, ray_address):
    import ray
    from ray import serve

    from eventray.serving.models import MLClient, deploy
    from eventray.serving.models.deployment import deployment_name

    if not ray.is_initialized():
        ray.init(address=ray_address, namespace="eventray", logging_level="WARNING", log_to_driver=False)
    app = f"{APP}-autoscale"
    settings = ml_settings.model_copy(update={
        "ml_app_name": app, "ml_min_replicas": 1, "ml_max_replicas": 3, "ml_target_ongoing_requests": 2,
        "ml_upscale_delay_s": 0, "ml_downscale_delay_s": 1, "ml_metrics_interval_s": 0.1,
        "ml_look_back_period_s": 0.5, "ml_max_batch_size": 4, "ml_max_ongoing_requests": 8,
    })
    name = deployment_name("anomaly")
    deploy(settings, ("anomaly",))
    try:
        client = MLClient.connect(settings, models=("anomaly",))
        assert _running(app, name) == 1
        rows = np.random.default_rng(1).normal(size=(256, 4)).astype(np.float32)
        stop = asyncio.Event()

        async def load():
            while not stop.is_set():
                await client.predict("anomaly", rows)

        workers = [asyncio.create_task(load()) for _ in range(24)]
        start = time.monotonic()
        while _running(app, name) < 3 and time.monotonic() - start < 30:
            await asyncio.sleep(0.1)
        up_s = time.monotonic() - start
        stop.set()
        await asyncio.gather(*workers)
        assert _running(app, name) == 3, f"not scaled to 3 in {up_s:.1f}s"
        start = time.monotonic()
        while _running(app, name) > 1 and time.monotonic() - start < 30:
            await asyncio.sleep(0.1)
        down_s = time.monotonic() - start
        assert _running(app, name) == 1, f"not back to 1 in {down_s:.1f}s"
        print(f"autoscale up {up_s:.1f}s, down {down_s:.1f}s")
    finally:
        serve.delete(app)
