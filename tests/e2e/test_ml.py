"""The ML fields over HTTP through Serve: the GraphQL ingress calling the model deployments bound
into the same app, typed errors for bad model input, alerts from the alerts projection, and
the models' replica counts and latencies in ``/metrics``."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from _gql import eventually, ok, send
from sklearn.datasets import load_digits


@pytest.fixture
def admin(client_for, uid):
    return client_for(f"ml-admin-{uid}", "admin")


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("errors"), body
    return body["errors"][0]


def test_score_movement(admin):
    q = "query($a: Float!) { scoreMovement(amount: $a, hour: 13, secondsSinceLast: 3600, velocity24h: 2) " \
        "{ score anomaly modelVersion } }"
    normal = admin.data(q, {"a": 25.0})["scoreMovement"]
    assert normal["anomaly"] is False and normal["modelVersion"] == "1"
    huge = admin.data(q.replace("hour: 13", "hour: 3").replace("secondsSinceLast: 3600", "secondsSinceLast: 5")
                      .replace("velocity24h: 2", "velocity24h: 9"), {"a": 90_000.0})["scoreMovement"]
    assert huge["anomaly"] is True and huge["score"] > normal["score"]


def test_classify_text_with_keywords(admin):
    got = admin.data('{ classifyText(text: "The café in Zürich was wonderful and great") { label modelVersion '
                     'probabilities { label probability } keywords { term weight } } }')["classifyText"]
    assert got["label"] == "positive" and got["modelVersion"] == "1"
    assert abs(sum(p["probability"] for p in got["probabilities"]) - 1.0) < 1e-4
    assert any(k["term"] == "zürich" for k in got["keywords"])


def test_classify_digit(admin):
    digits = load_digits()
    got = admin.data("query($p: [Float!]!) { classifyDigit(pixels: $p) { digit confidence probabilities } }",
                     {"p": digits.data[7].tolist()})["classifyDigit"]
    assert got["digit"] == digits.target[7] and len(got["probabilities"]) == 10 and 0 < got["confidence"] <= 1


def test_recommend(admin):
    got = admin.data('{ recommend(userId: "user-0003", first: 4) { itemId score } }')["recommend"]
    assert len(got) == 4 and got[0]["score"] >= got[-1]["score"]


def test_models(admin):
    models = admin.data("{ models { name family default versions { version sha256 trainingDataSha256 "
                        "opset { domain version } metrics { name value } } } }")["models"]
    assert {m["name"] for m in models} >= {"anomaly", "sentiment", "digits", "recommend"}
    anomaly = next(m for m in models if m["name"] == "anomaly")
    assert anomaly["default"] == "1" and len(anomaly["versions"][0]["sha256"]) == 64
    assert any(x["name"].startswith("heldout_") for x in anomaly["versions"][0]["metrics"])


@pytest.mark.parametrize(("query", "code", "reason"), [
    ('{ classifyDigit(pixels: [1, 2, 3]) { digit } }', "VALIDATION", "MODEL_INPUT_SHAPE"),
    ('{ classifyText(text: "") { label } }', "VALIDATION", "MODEL_INPUT_EMPTY_TEXT"),
    ('{ classifyText(text: "' + "ü" * 2500 + '") { label } }', "VALIDATION", "MODEL_INPUT_TEXT_TOO_LONG"),
    ('{ scoreMovement(amount: -5, hour: 1, secondsSinceLast: 1, velocity24h: 1) { score } }', "VALIDATION",
     "MODEL_INPUT_NAN"),
    ('{ scoreMovement(amount: 5, hour: 1, secondsSinceLast: 1, velocity24h: 1, version: "9") { score } }',
     "NOT_FOUND", "UNKNOWN_MODEL_VERSION"),
    ('{ recommend(userId: "u", first: 0) { itemId } }', "VALIDATION", None),
])
def test_bad_model_input_gets_a_typed_error(admin, query, code, reason):
    err = error_of(admin.run(query))
    assert err["extensions"]["code"] == code and err["extensions"].get("reason") == reason, err
    assert err["message"] and "Traceback" not in err["message"]


def test_alerts_of_an_account(api, admin, uid):
    """A run of ordinary deposits, then one deposit 400x their size: the alerts projection
    (its host scoring through this app's anomaly deployment) flags it, and only it."""
    from eventray.platform.projections.host import host_group, place_hosts
    from eventray.platform.projections.replay import replay
    from eventray.platform.projections.store import ProjectionStore

    rt = api["rt"]
    store = ProjectionStore(rt.settings.dsn)
    try:
        version = store.current_version("alerts")
    finally:
        store.close()
    if version is None:
        replay(rt, "alerts", timeout_s=300)
    hosts = host_group(rt.topic, "alerts")  # an enriching projection has a host group of its own
    placed = not hosts.live()
    if placed:
        place_hosts(rt, names=["alerts"])  # resumes from the stored offsets
    try:
        owner, account = f"al-{uid}", f"ala-{uid}"
        ok(send(admin, "registerUser", userId=owner, name=f"Alert {uid}", email=f"al{uid}@example.com"))
        ok(send(admin, "openAccount", accountId=account, ownerId=owner, currency="EUR"))
        for amount in (1000, 1100, 900, 1050, 950, 1000, 1020, 980):
            ok(send(admin, "deposit", accountId=account, amount=amount))
        ok(send(admin, "deposit", accountId=account, amount=400_000))
        q = f'{{ alerts(accountId: "{account}") {{ accountId at amount score zscore reason modelVersion }} }}'
        alerts = eventually(lambda: [a for a in admin.data(q)["alerts"] if a["amount"] == 400_000],
                            timeout_s=60)
        assert alerts[0]["accountId"] == account and "zscore" in alerts[0]["reason"]
        assert alerts[0]["zscore"] > 4 and alerts[0]["modelVersion"] == "1" and alerts[0]["at"].startswith("20")
        # the ordinary deposits are seconds apart at whatever hour the test runs, which the model
        # may call a burst; their amounts, though, are never outliers against the account's own
        assert not [a for a in admin.data(q)["alerts"] if a["amount"] < 2000 and "zscore" in a["reason"]]
    finally:
        if placed:
            hosts.remove_all()


def test_metrics_show_replicas_and_model_latencies(api, admin):
    admin.data("{ scoreMovement(amount: 10, hour: 12, secondsSinceLast: 60, velocity24h: 1) { score } }")
    text = httpx.get(f"{api['base']}/metrics", timeout=30).text
    app = api["serving"].app_name
    for model in ("anomaly", "sentiment", "digits", "recommend"):
        m = re.search(rf'eventray_serve_replicas{{app="{app}",deployment="model-{model}",state="RUNNING"}} (\d+)', text)
        assert m and int(m.group(1)) >= 1, f"no RUNNING replica count for model-{model}"
    assert re.search(rf'eventray_serve_replicas{{app="{app}",deployment="GraphQLIngress",state="RUNNING"}} [1-9]', text)
    count = re.search(r'eventray_model_inference_seconds_count{model="anomaly"} (\d+)', text)
    assert count and int(count.group(1)) >= 1
    assert re.search(r'eventray_model_inference_seconds{model="anomaly",quantile="0.5"} [0-9.]+', text)
    assert re.search(r'eventray_model_batches_total{model="anomaly",batch_size="\d+"} [1-9]', text)
    assert "eventray_model_stats_errors 0" in text
