"""Resolver-ready async functions for the ML GraphQL fields (SDL: ``serving/graphql/schema.graphql``; bound in ``serving/api/ml.py``).

Each takes the :class:`MLClient` (from the GraphQL context) and the field's arguments, and
returns plain dicts shaped like the SDL types. Errors are the typed eventray errors
(``MODEL_INPUT_*``, ``UNKNOWN_MODEL*``) for the GraphQL error formatter. Wiring, e.g. in Ariadne::

    query.set_field("classifyText", lambda _, info, **kw: resolvers.classify_text(info.context["ml"], **kw))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventray.serving.models.client import MLClient


async def score_movement(ml: MLClient, *, amount: float, hour: float, secondsSinceLast: float,
                         velocity24h: float, version: str | None = None) -> dict[str, Any]:
    """``scoreMovement``: the anomaly score of one movement's features (amount in major units)."""
    import math

    features = [[math.log1p(amount) if amount >= 0 else float("nan"), hour,
                 math.log1p(secondsSinceLast) if secondsSinceLast >= 0 else float("nan"), velocity24h]]
    out = await ml.predict("anomaly", features, version=version)
    return {"score": float(out["score"][0]), "anomaly": bool(out["anomaly"][0]), "modelVersion": out["version"]}


async def classify_text(ml: MLClient, *, text: str, version: str | None = None) -> dict[str, Any]:
    """``classifyText``: sentiment label, class probabilities and keywords."""
    from eventray.platform.ml.datasets import SENTIMENT_CLASSES

    out = await ml.predict("sentiment", text, version=version)
    return {"label": str(out["label"][0]),
            "probabilities": [{"label": c, "probability": float(p)}
                              for c, p in zip(SENTIMENT_CLASSES, out["probabilities"][0])],
            "keywords": [{"term": t, "weight": w} for t, w in out["keywords"][0]],
            "modelVersion": out["version"]}


async def classify_digit(ml: MLClient, *, pixels: list[float], version: str | None = None) -> dict[str, Any]:
    """``classifyDigit``: the digit in an 8x8 image given as 64 pixel values in 0..16."""
    out = await ml.predict("digits", [pixels], version=version)
    probabilities = np.asarray(out["probabilities"][0])
    return {"digit": int(out["label"][0]), "confidence": float(probabilities.max()),
            "probabilities": [float(p) for p in probabilities], "modelVersion": out["version"]}


async def recommend(ml: MLClient, *, userId: str, first: int = 10, version: str | None = None) -> list[dict[str, Any]]:
    """``recommend(userId, first)``: the top items for a user, best first."""
    out = await ml.predict("recommend", (userId, first), version=version)
    return [{"itemId": i, "score": float(s)} for i, s in zip(out["items"], out["scores"])]


async def models(ml: MLClient) -> list[dict[str, Any]]:
    """``models``: every registry model with its versions, default version and metrics."""
    return [{**m, "versions": [{**v, "metrics": [{"name": k, "value": x} for k, x in v["metrics"].items()],
                                "opset": [{"domain": d, "version": n} for d, n in v["opset"].items()]}
                               for v in m["versions"]]}
            for m in ml.models()]
