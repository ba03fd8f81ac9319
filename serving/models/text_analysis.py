"""Analysing many texts for a read model: the support inbox's enrichment step.

:class:`TextAnalyser` sends a batch's texts to the sentiment, topics and entities deployments
in chunks (``chunk`` texts per request, never one request per text) through
:func:`eventray.serving.models.resolvers.analyze_texts`. A chunk that a model refuses with a
typed input error (``MODEL_INPUT_*``) is retried text by text, so only the refused texts come
back with ``error`` set; every other error propagates (the projection's batch fails and is
retried).
"""

from __future__ import annotations

import asyncio

from eventray.platform.errors import InvalidModelInput
from eventray.platform.ml.text import TextAnalysis
from eventray.serving.models.client import MLClient
from eventray.serving.models.resolvers import analyze_texts


def _analysis(out: dict) -> TextAnalysis:
    return TextAnalysis(topic=out["topic"], sentiment=out["sentiment"], entities=out["entities"],
                        keywords=out["keywords"], summary=out["summary"], model_versions=out["modelVersions"])


def _refused(error: InvalidModelInput) -> TextAnalysis:
    return TextAnalysis(topic=None, sentiment=None, entities=[], keywords=[], summary=[], model_versions={},
                        error=error.code)


class TextAnalyser:
    """Topic, sentiment, entities, keywords and a summary for each of many texts.

    Args:
        client: the ML client (handles to the text deployments).
        chunk: texts per request to each deployment.
        summary_sentences: sentences in each text's extractive summary.
    """

    def __init__(self, *, client: MLClient, chunk: int = 64, summary_sentences: int = 2) -> None:
        self._client = client
        self._chunk = chunk
        self._sentences = summary_sentences

    async def analyse(self, texts: list[str]) -> list[TextAnalysis]:
        """One :class:`TextAnalysis` per text, in order."""
        chunks = [texts[i:i + self._chunk] for i in range(0, len(texts), self._chunk)]
        done = await asyncio.gather(*(self._chunk_of(c) for c in chunks))
        return [a for part in done for a in part]

    async def _chunk_of(self, texts: list[str]) -> list[TextAnalysis]:
        try:
            return [_analysis(o) for o in await analyze_texts(self._client, texts, summary_sentences=self._sentences)]
        except InvalidModelInput as e:
            if len(texts) == 1:
                return [_refused(e)]
        singles = await asyncio.gather(*(self._chunk_of([t]) for t in texts))  # isolate the refused ones
        return [a for one in singles for a in one]
