"""ML training: determinism, ONNX == sklearn on held-out data, and input validation (no Ray).

Tolerances: probabilities and scores within 1e-4 absolute (float32 inference against sklearn's
float64); labels equal except where sklearn's own margin is below 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from eventray.platform.errors import (
    EmptyText, InvalidModelInput, NonFiniteInput, TextTooLong, UnknownModel, UnknownModelVersion, WrongInputShape,
)
from eventray.platform.ml.families import AnomalyFamily, Limits, load_family, make_session
from eventray.platform.ml.registry import Registry, promote
from eventray.platform.ml.training import MODEL_NAMES, train, train_all, write_models

ATOL = 1e-4
NON_ASCII = ["Das Café in Zürich war wunderbar and great", "the señor was rude and horrible, naïve façade",
             "Ångström lab: déjà vu, really good", "smörgåsbord über alles — terrible"]


@pytest.fixture(scope="module")
def trained():
    return {name: train(name) for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, trained):
    path = tmp_path_factory.mktemp("models")
    write_models(path, list(trained.values()), version="1", seed=0)
    return path


def _family(trained, name, family):
    blob = trained[name].onnx_bytes()
    return family(make_session(blob), limits=Limits(max_rows=100_000, max_text_chars=500))


def test_training_twice_gives_the_same_manifest_and_files(model_dir, tmp_path):
    train_all(tmp_path)
    assert (tmp_path / "registry.json").read_bytes() == (model_dir / "registry.json").read_bytes()
    records = Registry(tmp_path).records()
    assert [r.name for r in records] == sorted(MODEL_NAMES)
    for r in records:
        assert (tmp_path / r.file).read_bytes() == (model_dir / r.file).read_bytes()
        assert r.training_data_sha256 and r.metrics and r.inputs and r.outputs and r.opset


def test_a_different_seed_gives_a_different_model(model_dir, tmp_path):
    [v2] = train_all(tmp_path, version="2", seed=1, names=("anomaly",))
    assert v2.sha256 != Registry(model_dir).record("anomaly", "1").sha256


def test_anomaly_onnx_matches_sklearn(trained):
    t = trained["anomaly"]
    x = t.heldout
    fam = _family(trained, "anomaly", AnomalyFamily)
    [out] = fam.run([fam.validate(x)])
    expected = t.estimator.decision_function(x)
    np.testing.assert_allclose(-out["score"], expected, atol=ATOL)
    sure = np.abs(expected) > ATOL
    assert np.array_equal(out["anomaly"][sure], (t.estimator.predict(x) == -1)[sure])


def test_sentiment_onnx_matches_sklearn_including_non_ascii(trained):
    from eventray.platform.ml.families import TextFamily

    t = trained["sentiment"]
    texts = list(t.heldout) + NON_ASCII
    assert any(not s.isascii() for s in t.heldout), "held-out text must include non-ASCII"
    fam = _family(trained, "sentiment", TextFamily)
    [out] = fam.run([fam.validate(texts)])
    np.testing.assert_allclose(out["probabilities"], t.estimator.predict_proba(texts), atol=ATOL)
    classes = np.array(fam.classes)
    assert list(out["label"]) == list(classes[t.estimator.predict(texts)])
    # keywords: the top TF-IDF terms sklearn gives, accents included
    tfidf = t.estimator.named_steps["tfidf"]
    terms = tfidf.get_feature_names_out()
    for text, keywords in zip(NON_ASCII, out["keywords"][-len(NON_ASCII):]):
        row = tfidf.transform([text]).toarray()[0]
        expected = {terms[j]: row[j] for j in np.flatnonzero(row)}
        for term, weight in keywords:
            assert abs(expected[term] - weight) < ATOL
        assert {t for t, _ in keywords} == set(sorted(expected, key=lambda k: -expected[k])[:len(keywords)]) or \
            len({round(w, 4) for w in expected.values()}) < len(expected)  # ties may swap equal weights
    assert any(not term.isascii() for kws in out["keywords"][-len(NON_ASCII):] for term, _ in kws)


def test_digits_onnx_matches_sklearn(trained):
    from eventray.platform.ml.families import ImageFamily

    t = trained["digits"]
    fam = _family(trained, "digits", ImageFamily)
    pixels = t.heldout * 16.0
    [out] = fam.run([fam.validate(pixels)])
    np.testing.assert_allclose(out["probabilities"], t.estimator.predict_proba(t.heldout), atol=ATOL)
    assert np.array_equal(out["label"], t.estimator.predict(t.heldout))
    assert t.metrics["heldout_accuracy"] > 0.9


def test_recommend_onnx_matches_sklearn(trained):
    from eventray.platform.ml.families import RecommendFamily

    t = trained["recommend"]
    fam = _family(trained, "recommend", RecommendFamily)
    train_matrix = t.extra["train"]
    users = [0, 1, 17, 250, len(train_matrix) - 1]
    outs = fam.run([fam.validate((t.extra["users"][u], 10)) for u in users])
    for u, out in zip(users, outs):
        row = train_matrix[u:u + 1]
        scores = (t.estimator.transform(row) @ t.estimator.components_)[0] - 1e6 * row[0]
        top = np.argsort(-scores, kind="stable")[:10]
        np.testing.assert_allclose(out["scores"], scores[top], atol=ATOL)
        assert [int(i.split("-")[1]) for i in out["items"]][:3] == top[:3].tolist()


def test_bad_inputs_get_named_typed_errors(model_dir):
    registry = Registry(model_dir)
    anomaly = load_family("anomaly", registry.path(registry.record("anomaly")), limits=Limits(max_rows=8))
    with pytest.raises(WrongInputShape, match=r"\[rows, 4\]"):
        anomaly.validate([[1.0, 2.0, 3.0]])
    with pytest.raises(WrongInputShape, match="at most 8"):
        anomaly.validate(np.zeros((9, 4)))
    with pytest.raises(NonFiniteInput, match="row 1, column 2") as e:
        anomaly.validate([[1, 2, 3, 4], [1, 2, float("nan"), 4]])
    assert e.value.code == "MODEL_INPUT_NAN" and isinstance(e.value, InvalidModelInput)
    with pytest.raises(InvalidModelInput):
        anomaly.validate([["a", "b", "c", "d"]])
    text = load_family("text", registry.path(registry.record("sentiment")), limits=Limits(max_text_chars=50))
    for empty in ("", "   ", "12 34 !!"):
        with pytest.raises(EmptyText):
            text.validate(empty)
    with pytest.raises(TextTooLong, match="limit is 50"):
        text.validate("é" * 51)
    with pytest.raises(UnknownModel):
        registry.record("nope")
    with pytest.raises(UnknownModelVersion, match="known versions: 1"):
        registry.record("anomaly", "7")
    with pytest.raises(UnknownModelVersion):
        promote(model_dir, "anomaly", "7")
