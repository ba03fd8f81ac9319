"""analyzeText, analyzeImage and recommend(strategy) through the bank's executable schema, with the
model families run in-process behind an MLClient stand-in (no Ray: the deployments' contract is
validate one request, run a batch, add the version, as ``ModelDeployment`` does)."""

from __future__ import annotations

import argparse
import base64
import io
from typing import Any

import numpy as np
import pytest
import skimage.data as skdata
from graphql import graphql

from eventray.platform.ml.registry import Registry
from eventray.platform.ml.served import load_registered
from eventray.platform.ml.training import train, write_models



class InProcessModels:
    """The :class:`~eventray.serving.models.MLClient` calls the resolvers make, on in-process families."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._families: dict[tuple[str, str], Any] = {}
        self.calls: list[str] = []

    async def predict(self, model: str, payload: Any, *, version: str | None = None) -> dict[str, Any]:
        record = self.registry.record(model, version)
        key = (model, record.version)
        if key not in self._families:
            self._families[key] = load_registered(self.registry, record)
        family = self._families[key]
        item = family.validate(payload)
        self.calls.append(model)
        [out] = family.run([item])
        return {**out, "version": record.version}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> InProcessModels:
    from eventray.platform.ml.cli import _import

    path = tmp_path_factory.mktemp("models")
    mp = pytest.MonkeyPatch()
    mp.setenv("EVENTRAY_MODEL_DIR", str(path))
    try:
        assert _import(argparse.Namespace(version="1", model=["faces", "objects", "ocr", "entities"])) == 0
    finally:
        mp.undo()
    write_models(path, [train(n) for n in ("sentiment", "topics", "recommend_hybrid")], version="1", seed=0)
    return InProcessModels(Registry(path))


@pytest.fixture(scope="module")
def schema() -> Any:
    from eventray.platform.composition import Runtime
    from eventray.serving.api.schema import executable_schema

    return executable_schema(Runtime.load())


async def _run(schema: Any, models: InProcessModels, query: str, variables: dict[str, Any] | None = None) -> Any:
    return await graphql(schema, query, variable_values=variables, context_value={"ml": models})


def _png(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


TEXT = ("Shares in the London bank rose sharply on Monday after it reported record profits. "
        "Its chief executive, Sarah Jones, said the results were excellent and the outlook was great. "
        "Analysts in New York expect the bank to raise its dividend in March 2027. "
        "The weather was cold.")


async def test_analyze_text_answers_every_part(schema, models) -> None:
    q = ("query($t: String!) { analyzeText(text: $t, summarySentences: 2) { sentiment { label score } "
         "topic { label score } entities { text label start end } keywords { term weight } summary } }")
    r = await _run(schema, models, q, {"t": TEXT})
    assert r.errors is None, r.errors
    got = r.data["analyzeText"]
    assert got["sentiment"]["label"] == "positive" and 0.5 < got["sentiment"]["score"] <= 1
    assert got["topic"]["label"] == "business", got["topic"]
    found = {(e["text"], e["label"]) for e in got["entities"]}
    assert {("Sarah Jones", "PERSON"), ("New York", "GPE")} <= found, found
    assert any(e["label"] == "DATE" for e in got["entities"]), found
    for e in got["entities"]:
        assert TEXT[e["start"]:e["end"]] == e["text"]
    assert got["keywords"] and all(k["weight"] > 0 for k in got["keywords"])
    assert len(got["summary"]) == 2 and all(s in TEXT for s in got["summary"])
    assert "The weather was cold." not in got["summary"]  # the least central sentence


@pytest.mark.parametrize(("text", "sentences", "reason"), [
    ("", 2, "MODEL_INPUT_EMPTY_TEXT"), ("word " * 1000, 2, "MODEL_INPUT_TEXT_TOO_LONG"), (TEXT, 0, "MODEL_INPUT"),
])
async def test_analyze_text_refuses_bad_input_with_a_typed_error(schema, models, text, sentences, reason) -> None:
    r = await _run(schema, models, "query($t: String!, $n: Int) { analyzeText(text: $t, summarySentences: $n) "
                                   "{ summary } }", {"t": text, "n": sentences})
    assert r.errors and r.data is None
    assert r.errors[0].original_error is not None
    assert getattr(r.errors[0].original_error, "code", None) == reason, r.errors[0].original_error


async def test_analyze_image_finds_the_astronauts_face_and_the_profile(schema, models) -> None:
    q = ("query($i: String!) { analyzeImage(imageBase64: $i) { faces { label score box { x y width height } } "
         "objects { label score } text { text } profile { width height brightness colourfulness sharpness "
         "dominantColours { hex share } faces people objects textLines } } }")
    r = await _run(schema, models, q, {"i": _png(skdata.astronaut())})
    assert r.errors is None, r.errors
    got = r.data["analyzeImage"]
    assert [f["label"] for f in got["faces"]] == ["face"] and got["faces"][0]["box"]["width"] > 20
    assert "person" in {o["label"] for o in got["objects"]}
    p = got["profile"]
    assert (p["width"], p["height"]) == (512, 512) and 0 < p["brightness"] < 1 and p["colourfulness"] > 10
    assert p["faces"] == 1 and p["people"] >= 1 and p["objects"] == len(got["objects"])
    assert p["textLines"] == len(got["text"]) and abs(sum(c["share"] for c in p["dominantColours"]) - 1) < 0.01
    coffee = (await _run(schema, models, q, {"i": _png(skdata.coffee())})).data["analyzeImage"]
    assert coffee["faces"] == [] and coffee["profile"]["faces"] == 0


@pytest.mark.parametrize(("image", "reason"), [
    ("not base64!", "MODEL_INPUT_IMAGE"), ("", "MODEL_INPUT_IMAGE_EMPTY"),
    (base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode(), "MODEL_INPUT_IMAGE"),
])
async def test_analyze_image_refuses_a_bad_image_before_any_model(schema, models, image, reason) -> None:
    before = len(models.calls)
    r = await _run(schema, models, "query($i: String!) { analyzeImage(imageBase64: $i) { faces { label } } }",
                   {"i": image})
    assert r.errors and getattr(r.errors[0].original_error, "code", None) == reason, r.errors
    assert len(models.calls) == before


async def test_recommend_strategies_rank_differently_and_default_to_hybrid(schema, models) -> None:
    q = 'query($s: RecommendationStrategy) { recommend(userId: "user-0003", first: 5, strategy: $s) { itemId score } }'
    ranked = {}
    for strategy in ("COLLABORATIVE", "CONTENT", "HYBRID"):
        r = await _run(schema, models, q, {"s": strategy})
        assert r.errors is None, r.errors
        got = r.data["recommend"]
        assert len(got) == 5 and [g["score"] for g in got] == sorted((g["score"] for g in got), reverse=True)
        ranked[strategy] = [g["itemId"] for g in got]
    default = await _run(schema, models, '{ recommend(userId: "user-0003", first: 5) { itemId } }')
    assert [g["itemId"] for g in default.data["recommend"]] == ranked["HYBRID"]
    assert ranked["COLLABORATIVE"] != ranked["CONTENT"]


def _http(schema: Any, models: InProcessModels) -> Any:
    """The GraphQL HTTP endpoint as the ingress builds it (the hardened handler, the one error
    formatter), with the in-process models in its context; a Starlette test client on it."""
    from ariadne.asgi import GraphQL
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from eventray.serving.api.document_cache import DocumentCache
    from eventray.serving.api.errors import format_error
    from eventray.serving.api.http import HardenedHTTPHandler
    from eventray.serving.settings import ServingSettings

    documents = DocumentCache(hide_suggestions=True)
    graphql_app = GraphQL(schema, context_value={"ml": models}, query_parser=documents.parse,
                          error_formatter=format_error,
                          http_handler=HardenedHTTPHandler(ServingSettings(), parse=documents.parse))
    return TestClient(Starlette(routes=[Route("/graphql", graphql_app, methods=["GET", "POST"])]))


UPLOAD = ("query($f: Upload!) { analyzeImageUpload(image: $f) { faces { label } "
          "profile { width height faces } } }")


def _multipart(client: Any, image: bytes, *, preflight: bool = True) -> Any:
    import json

    return client.post("/graphql", headers={"GraphQL-Require-Preflight": "1"} if preflight else {}, data={
        "operations": json.dumps({"query": UPLOAD, "variables": {"f": None}}),
        "map": json.dumps({"0": ["variables.f"]})}, files={"0": ("astronaut.png", image, "image/png")})


def test_an_image_uploads_by_the_multipart_request_spec(schema, models) -> None:
    with _http(schema, models) as client:
        r = _multipart(client, base64.b64decode(_png(skdata.astronaut())))
        assert r.status_code == 200, r.text
        got = r.json()["data"]["analyzeImageUpload"]
        assert [f["label"] for f in got["faces"]] == ["face"]
        assert got["profile"] == {"width": 512, "height": 512, "faces": 1}
        # without the preflight header a cross-site form could send it: refused, nothing run
        before = len(models.calls)
        refused = _multipart(client, base64.b64decode(_png(skdata.astronaut())), preflight=False)
        assert refused.status_code == 400 and refused.json()["errors"][0]["extensions"]["code"] == "CSRF_REFUSED"
        assert len(models.calls) == before


def test_a_bad_upload_gets_a_typed_error_before_any_model(schema, models) -> None:
    with _http(schema, models) as client:
        before = len(models.calls)
        for image, reason in ((b"\x89PNG\r\n\x1a\nbroken", "MODEL_INPUT_IMAGE"), (b"", "MODEL_INPUT_IMAGE_EMPTY")):
            r = _multipart(client, image)
            error = r.json()["errors"][0]
            assert error["extensions"]["reason"] == reason, error
        # an Upload given as a JSON value instead of a file
        r = client.post("/graphql", json={"query": UPLOAD, "variables": {"f": "aGVsbG8="}})
        assert r.json()["errors"][0]["extensions"]["reason"] == "MODEL_INPUT_IMAGE", r.text
        assert len(models.calls) == before
