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


#: what ``recommend(strategy)`` calls: every strategy is one alpha of the hybrid graph
#: (``recommend_hybrid``: content vectors and SVD factors in one ONNX model)
RECOMMEND_MODEL = "recommend_hybrid"
#: most sentences ``analyzeText`` summarises into
MAX_SUMMARY_SENTENCES = 10


async def recommend(ml: MLClient, *, userId: str, first: int = 10, strategy: str = "HYBRID",
                    version: str | None = None) -> list[dict[str, Any]]:
    """``recommend(userId, first, strategy)``: the top items for a user, best first."""
    out = await ml.predict(RECOMMEND_MODEL, (userId, first, strategy), version=version)
    return [{"itemId": i, "score": float(s)} for i, s in zip(out["items"], out["scores"])]


def _label(out: dict[str, Any], i: int = 0) -> dict[str, Any]:
    """The predicted label of a text classifier's answer for its ``i``-th text, scored by its probability."""
    probabilities = np.asarray(out["probabilities"][i])
    return {"label": str(out["label"][i]), "score": float(probabilities.max())}


async def analyze_texts(ml: MLClient, texts: list[str], *, summary_sentences: int = 2,
                        version: str | None = None) -> list[dict[str, Any]]:
    """:func:`analyze_text` of several texts: one request per model for all of them. Each result
    also names the ``modelVersions`` that answered. A text a model refuses fails the whole call
    with that model's typed error (its ``index`` detail says which text)."""
    import asyncio

    from eventray.platform.errors import InvalidModelInput
    from eventray.platform.ml.text import summarize

    if not 1 <= summary_sentences <= MAX_SUMMARY_SENTENCES:
        raise InvalidModelInput(f"summarySentences must be in 1..{MAX_SUMMARY_SENTENCES}", field="summarySentences")
    if not texts:
        return []
    sentiment, topic, entities = await asyncio.gather(
        ml.predict("sentiment", texts, version=version), ml.predict("topics", texts, version=version),
        ml.predict("entities", texts))
    # after the models: they refuse an empty or oversized text with the typed errors first
    summaries = await asyncio.to_thread(lambda: [summarize(t, summary_sentences) for t in texts])
    versions = {"sentiment": sentiment["version"], "topics": topic["version"], "entities": entities["version"]}
    return [{"sentiment": _label(sentiment, i), "topic": _label(topic, i), "entities": entities["entities"][i],
             "keywords": [{"term": t, "weight": w} for t, w in sentiment["keywords"][i]], "summary": summaries[i],
             "modelVersions": versions} for i in range(len(texts))]


async def analyze_text(ml: MLClient, *, text: str, summarySentences: int = 2,
                       version: str | None = None) -> dict[str, Any]:
    """``analyzeText``: sentiment, topic, entities and keywords from the model deployments, and an
    extractive summary (LexRank, :func:`eventray.platform.ml.text.summarize`) computed here."""
    (out,) = await analyze_texts(ml, [text], summary_sentences=summarySentences, version=version)
    del out["modelVersions"]
    return out


def _decode_base64(image: str) -> bytes:
    import base64
    import binascii

    from eventray.platform.errors import InvalidImage

    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage("imageBase64 is not base64", field="imageBase64") from None


async def analyze_image(ml: MLClient, *, imageBase64: str, limits: Any = None) -> dict[str, Any]:
    """``analyzeImage``: faces, objects and text lines from the model deployments, and the image's
    measured profile (:func:`eventray.platform.ml.scene.measure`) computed here.

    Args:
        ml: the model client.
        imageBase64: the encoded image (PNG, JPEG, ...), base64.
        limits: the :class:`~eventray.platform.ml.images.ImageLimits` of the local decode
            (default: the model deployments' defaults, 10 MiB and 25 megapixels).
    """
    from eventray.platform.ml.images import ImageLimits

    return await _analyze_image(ml, _decode_base64(imageBase64), limits or ImageLimits())


async def analyze_image_upload(ml: MLClient, *, image: Any, limits: Any = None) -> dict[str, Any]:
    """``analyzeImageUpload``: :func:`analyze_image` of a file uploaded by the multipart request spec.

    Args:
        ml: the model client.
        image: the upload (Starlette's ``UploadFile``, which Ariadne puts in the variables).
        limits: as :func:`analyze_image`; at most ``max_bytes`` + 1 bytes are read.
    """
    from eventray.platform.errors import ImageTooLarge, InvalidImage
    from eventray.platform.ml.images import ImageLimits

    limits = limits or ImageLimits()
    read = getattr(image, "read", None)
    if read is None:
        raise InvalidImage("image must be a file of a multipart request (the GraphQL multipart request spec), "
                           "not a value in the JSON variables; send base64 to analyzeImage instead", field="image")
    data = await read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the uploaded image has more than {limits.max_bytes} bytes", field="image")
    return await _analyze_image(ml, data, limits)


async def _analyze_image(ml: MLClient, data: bytes, limits: Any) -> dict[str, Any]:
    import asyncio

    from eventray.platform.ml.images import decode_image
    from eventray.platform.ml.scene import measure

    rgb = decode_image(data, limits)  # a bad image is refused before any model is called
    (faces, objects, text), profile = await asyncio.gather(
        asyncio.gather(ml.predict("faces", data), ml.predict("objects", data), ml.predict("ocr", data)),
        asyncio.to_thread(measure, rgb))
    found = objects["detections"]
    return {"faces": faces["detections"], "objects": found, "text": text["lines"],
            "profile": {"width": profile.width, "height": profile.height, "brightness": profile.brightness,
                        "colourfulness": profile.colourfulness, "sharpness": profile.sharpness,
                        "dominantColours": [{"hex": c.hex, "share": c.share} for c in profile.dominant_colours],
                        "faces": len(faces["detections"]), "people": sum(d["label"] == "person" for d in found),
                        "objects": len(found), "textLines": len(text["lines"])}}


async def models(ml: MLClient) -> list[dict[str, Any]]:
    """``models``: every registry model with its versions, default version and metrics."""
    return [{**m, "versions": [{**v, "metrics": [{"name": k, "value": x} for k, x in v["metrics"].items()],
                                "opset": [{"domain": d, "version": n} for d, n in v["opset"].items()]}
                               for v in m["versions"]]}
            for m in ml.models()]
