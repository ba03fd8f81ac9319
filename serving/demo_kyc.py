"""The demo's identity verification: a customer submits an identity card, the KYC saga reads it.

:func:`identity_document` renders a card here with Pillow: the holder's name, one word per
line, beside a photograph of a face (scikit-image's bundled ``astronaut()``, public domain,
NASA), or without one. :func:`identity_verification` registers a user of its own, submits the
card with that user's token (``submitIdentityDocument``) and reads
``user { identityVerification }`` until the KYC saga has recorded its outcome: the ``ocr``
model must read the registered name and the ``faces`` model find a face, on Serve.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from typing import Any

from eventray.serving.demo_client import GraphQLClient

__all__ = ["identity_document", "identity_verification"]

_STATUS = "query($u: ID!) { user(id: $u) { identityVerification { status submission reason } } }"


def identity_document(name: str, *, face: bool = True) -> bytes:
    """A 640x260 PNG identity card: ``IDENTITY CARD``, ``name`` in capitals one word per line,
    and (``face``) a face beside it. The name is best ASCII: Pillow's default font draws only
    part of Latin-1 in capitals."""
    from PIL import Image, ImageDraw, ImageFont

    card = Image.new("RGB", (640, 260), (236, 240, 246))
    draw = ImageDraw.Draw(card)
    if face:
        from skimage import data as skdata

        card.paste(Image.fromarray(skdata.astronaut()).crop((140, 20, 340, 240)).resize((180, 198)), (20, 30))
    draw.text((230, 50), "IDENTITY CARD", fill=(20, 20, 20), font=ImageFont.load_default(size=22))
    font = ImageFont.load_default(size=34)
    for i, word in enumerate(name.upper().split()):
        draw.text((230, 100 + 50 * i), word, fill="black", font=font)
    buf = io.BytesIO()
    card.save(buf, "PNG")
    return buf.getvalue()


async def identity_verification(customer: GraphQLClient, teller: GraphQLClient, user_id: str, name: str, *,
                                document: bytes | None = None, timeout_s: float = 90.0) -> dict[str, Any]:
    """Register ``user_id`` as ``name`` (by ``teller``), submit ``document`` (default: the card of
    ``name`` with a face) as ``customer`` (whose token is ``user_id``'s), and wait until the
    verification is no longer pending.

    Returns:
        ``identityVerification`` (``status``, ``submission``, ``reason``) and ``waited_s``.

    Raises:
        TimeoutError: still pending after ``timeout_s`` (are the KYC coordinators and the
            ``ocr`` / ``faces`` deployments running? ``eventray sagas``, ``eventray models``).
        RuntimeError: a command was refused.
    """
    registered = await teller.command("registerUser", {"userId": user_id, "name": name,
                                                       "email": f"{user_id}@kyc.demo.example"})
    if registered["__typename"] != "CommandSuccess":
        raise RuntimeError(f"registerUser answered {registered}")
    image = base64.b64encode(document if document is not None else identity_document(name)).decode()
    submitted = await customer.command("submitIdentityDocument", {"userId": user_id, "imageBase64": image})
    if submitted["__typename"] != "CommandSuccess":
        raise RuntimeError(f"submitIdentityDocument answered {submitted}")
    t0 = time.monotonic()
    while True:
        user = (await customer.query(_STATUS, {"u": user_id}))["user"]  # None until user_directory has it
        found = user["identityVerification"] if user else None
        if found is not None and found["status"] != "PENDING":
            return {**found, "waited_s": time.monotonic() - t0}
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"the identity document of {user_id!r} was still pending after {timeout_s:.0f}s "
                               "(are the KYC coordinators and the ocr and faces models running? "
                               "eventray sagas, eventray models)")
        await asyncio.sleep(0.5)
