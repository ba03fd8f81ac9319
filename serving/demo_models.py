"""The demo's model queries: one GraphQL query to each model family bound into the app.

``scoreMovement`` (anomaly: an ordinary movement against a large one in the small hours, part of
a burst), ``classifyText`` (sentiment with keywords), ``classifyDigit`` (an 8x8 image from
scikit-learn's bundled digits, whose label is known) and ``recommend`` (a user of the
recommender's training data).
"""

from __future__ import annotations

import asyncio
from typing import Any

from eventray.serving.demo_client import GraphQLClient

__all__ = ["query_models"]

_SCORE = """query { usual: scoreMovement(amount: 42.5, hour: 13, secondsSinceLast: 86400, velocity24h: 1) {
                      score anomaly modelVersion }
                    burst: scoreMovement(amount: 90000, hour: 3, secondsSinceLast: 5, velocity24h: 9) {
                      score anomaly } }"""
_TEXT = "The transfer arrived fast and the support was wonderful"
_DIGIT_INDEX = 7
_USER = "user-0003"


def _digit() -> tuple[list[float], int]:
    from eventray.platform.ml.datasets import digits

    pixels, labels = digits()
    return pixels[_DIGIT_INDEX].tolist(), int(labels[_DIGIT_INDEX])


async def query_models(client: GraphQLClient) -> tuple[bool, str]:
    """Whether every family answered as expected, and one line that shows the four answers."""
    pixels, label = await asyncio.to_thread(_digit)
    score, text, digit, recs = await asyncio.gather(
        client.query(_SCORE),
        client.query("query($t: String!) { classifyText(text: $t) { label probabilities { label probability } "
                     "keywords { term } } }", {"t": _TEXT}),
        client.query("query($p: [Float!]!) { classifyDigit(pixels: $p) { digit confidence } }", {"p": pixels}),
        client.query("query($u: ID!) { recommend(userId: $u, first: 3) { itemId score } }", {"u": _USER}))
    usual, burst = score["usual"], score["burst"]
    sentiment: dict[str, Any] = text["classifyText"]
    p = max(x["probability"] for x in sentiment["probabilities"])
    keywords = ", ".join(k["term"] for k in sentiment["keywords"][:3])
    d = digit["classifyDigit"]
    items = recs["recommend"]
    ok = (not usual["anomaly"] and burst["anomaly"] and sentiment["label"] == "positive" and d["digit"] == label
          and len(items) == 3)
    line = (f"scoreMovement usual {usual['score']:.3f} / burst {burst['score']:.3f} "
            f"(anomaly {str(burst['anomaly']).lower()}, model v{usual['modelVersion']}); "
            f"classifyText {sentiment['label']} {p:.2f} ({keywords}); "
            f"classifyDigit a {label} -> {d['digit']} ({d['confidence']:.2f}); "
            f"recommend {_USER} -> {', '.join(i['itemId'] for i in items)}")
    return ok, line
