"""The demo's model queries: one GraphQL query to each model family bound into the app.

``scoreMovement`` (anomaly: an ordinary movement against a large one in the small hours, part of
a burst), ``classifyText`` (sentiment with keywords), ``classifyDigit`` (an 8x8 image from
scikit-learn's bundled digits, whose label is known), ``recommend`` (a user of the
recommender's training data, hybrid), ``analyzeText`` (a customer's message: sentiment, topic,
entities, a one-sentence summary), ``analyzeImage`` (a receipt line rendered here with
Pillow: the text read back, no face, its profile) and ``analyzeImageUpload`` (the same receipt
uploaded as a file by the GraphQL multipart request spec).
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
_MESSAGE = ("Yesterday Maria Keller moved money from her account in Berlin to the London branch. "
            "The transfer arrived fast and the support was excellent. She wants the same service in June.")
#: what the receipt image says (no space: PP-OCRv4 drops the narrow space of Pillow's default font)
_RECEIPT = "TRANSFER4097"


def _receipt_png() -> str:
    import base64
    import io

    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (420, 90), "white")
    ImageDraw.Draw(image).text((20, 20), _RECEIPT, fill="black", font=ImageFont.load_default(size=40))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _digit() -> tuple[list[float], int]:
    from eventray.platform.ml.datasets import digits

    pixels, labels = digits()
    return pixels[_DIGIT_INDEX].tolist(), int(labels[_DIGIT_INDEX])


async def query_models(client: GraphQLClient) -> tuple[bool, str]:
    """Whether every family answered as expected, and one line that shows the four answers."""
    pixels, label = await asyncio.to_thread(_digit)
    receipt = await asyncio.to_thread(_receipt_png)
    import base64

    score, text, digit, recs, analysis, image, upload = await asyncio.gather(
        client.query(_SCORE),
        client.query("query($t: String!) { classifyText(text: $t) { label probabilities { label probability } "
                     "keywords { term } } }", {"t": _TEXT}),
        client.query("query($p: [Float!]!) { classifyDigit(pixels: $p) { digit confidence } }", {"p": pixels}),
        client.query("query($u: ID!) { recommend(userId: $u, first: 3) { itemId score } }", {"u": _USER}),
        client.query("query($t: String!) { analyzeText(text: $t, summarySentences: 1) { sentiment { label } "
                     "topic { label score } entities { text label } summary } }", {"t": _MESSAGE}),
        client.query("query($i: String!) { analyzeImage(imageBase64: $i) { faces { label } objects { label } "
                     "text { text score } profile { brightness dominantColours { hex } textLines } } }",
                     {"i": receipt}),
        client.query("query($f: Upload!) { analyzeImageUpload(image: $f) { text { text } } }",
                     files={"f": ("receipt.png", base64.b64decode(receipt), "image/png")}))
    usual, burst = score["usual"], score["burst"]
    sentiment: dict[str, Any] = text["classifyText"]
    p = max(x["probability"] for x in sentiment["probabilities"])
    keywords = ", ".join(k["term"] for k in sentiment["keywords"][:3])
    d = digit["classifyDigit"]
    items = recs["recommend"]
    a, im = analysis["analyzeText"], image["analyzeImage"]
    entities = {(e["text"], e["label"]) for e in a["entities"]}
    read = [line["text"] for line in im["text"]]
    uploaded = [line["text"] for line in upload["analyzeImageUpload"]["text"]]
    ok = (not usual["anomaly"] and burst["anomaly"] and sentiment["label"] == "positive" and d["digit"] == label
          and len(items) == 3 and a["sentiment"]["label"] == "positive" and ("Maria Keller", "PERSON") in entities
          and len(a["summary"]) == 1 and read == [_RECEIPT] and im["faces"] == [] and uploaded == [_RECEIPT])
    line = (f"scoreMovement usual {usual['score']:.3f} / burst {burst['score']:.3f} "
            f"(anomaly {str(burst['anomaly']).lower()}, model v{usual['modelVersion']}); "
            f"classifyText {sentiment['label']} {p:.2f} ({keywords}); "
            f"classifyDigit a {label} -> {d['digit']} ({d['confidence']:.2f}); "
            f"recommend {_USER} -> {', '.join(i['itemId'] for i in items)}; "
            f"analyzeText {a['sentiment']['label']}, topic {a['topic']['label']} {a['topic']['score']:.2f}, "
            f"entities {', '.join(f'{t} {lab}' for t, lab in sorted(entities))}; "
            f"analyzeImage read {read}, {len(im['faces'])} faces, {len(im['objects'])} objects, "
            f"brightness {im['profile']['brightness']:.2f}; analyzeImageUpload read {uploaded}")
    return ok, line
