"""KYC end to end on the real models: identity cards rendered here go in through
``submitIdentityDocument``; the KYC saga reads them with the ``ocr`` deployment, looks for a face
with the ``faces`` deployment, and ``user { identityVerification }`` shows the outcome.

The three cards are submitted at once (the deployments batch them): the registered name beside a
face is verified; the name without a face is rejected ``no_face``; a face beside someone else's
name is rejected ``name_mismatch``. (Timed out is the integration test's: it needs a service that
never answers.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from _gql import token

from eventray.serving.demo_client import GraphQLClient
from eventray.serving.demo_kyc import identity_document, identity_verification


def test_identity_cards_are_verified_or_rejected_with_the_reason_by_the_real_models(api, uid):
    cases = {
        f"kyc-ok-{uid}": ("Ada Lovelace", identity_document("Ada Lovelace")),
        f"kyc-noface-{uid}": ("Grace Hopper", identity_document("Grace Hopper", face=False)),
        f"kyc-other-{uid}": ("Alan Turing", identity_document("Edsger Dijkstra")),
    }

    async def run() -> dict[str, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=60) as http:
            teller = GraphQLClient(api["url"], token(f"kyc-teller-{uid}", "teller"), http=http)

            async def one(user_id: str, name: str, document: bytes) -> dict[str, Any]:
                customer = GraphQLClient(api["url"], token(user_id, "customer"), http=http)
                return await identity_verification(customer, teller, user_id, name, document=document,
                                                   timeout_s=120)

            got = await asyncio.gather(*(one(u, n, d) for u, (n, d) in cases.items()))
            return dict(zip(cases, got, strict=True))

    outcome = {u: (v["status"], v["submission"], v["reason"]) for u, v in asyncio.run(run()).items()}
    assert outcome == {
        f"kyc-ok-{uid}": ("VERIFIED", 1, None),
        f"kyc-noface-{uid}": ("REJECTED", 1, "no_face"),
        f"kyc-other-{uid}": ("REJECTED", 1, "name_mismatch"),
    }
