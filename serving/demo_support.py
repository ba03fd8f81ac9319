"""The demo's support inbox: a customer writes to support, a teller reads the analysed message.

The customer sends ``sendSupportMessage`` with their own token; the message's id is
``<user id>/<version>`` from the answer. The teller then reads ``supportInbox(userId)`` until the
support_inbox projection has applied it (the topic, sentiment, entities and summary come from
the text models on Serve, inside the projection's batch transaction).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from eventray.serving.demo_client import GraphQLClient

__all__ = ["support_inbox"]

_BODY = ("Hello, my card was charged twice at the Lisbon airport on Monday. "
         "Please refund the second payment. Thank you, the support was excellent last time.")
_INBOX = """query($u: ID!) { supportInbox(userId: $u, first: 5) { id sentAt topic { label score }
            sentiment { label score } entities { text label } keywords { term } summary analysisError } }"""


async def support_inbox(customer: GraphQLClient, teller: GraphQLClient, user_id: str, *,
                        timeout_s: float = 60.0) -> tuple[bool, str]:
    """Whether the message came back analysed, and one line that shows the analysis."""
    result = await customer.command("sendSupportMessage", {"userId": user_id, "body": _BODY})
    if result["__typename"] != "CommandSuccess":
        return False, f"sendSupportMessage answered {result}"
    message_id = f"{user_id}/{result['version']}"
    t0 = time.monotonic()
    row: dict[str, Any] | None = None
    while row is None:
        rows = (await teller.query(_INBOX, {"u": user_id}))["supportInbox"]
        row = next((r for r in rows if r["id"] == message_id), None)
        if row is None:
            if time.monotonic() - t0 > timeout_s:
                return False, (f"message {message_id} was not in supportInbox after {timeout_s:.0f}s "
                               "(is the support_inbox projection running? eventray projections)")
            await asyncio.sleep(0.5)
    waited = time.monotonic() - t0
    entities = sorted({(e["text"], e["label"]) for e in row["entities"]})
    ok = (row["analysisError"] is None and row["topic"] is not None and row["sentiment"] is not None
          and ("Lisbon", "GPE") in entities and len(row["summary"]) >= 1)
    topic, sentiment = row["topic"] or {}, row["sentiment"] or {}
    return ok, (f"sendSupportMessage {message_id}, in supportInbox after {waited:.1f}s: topic "
                f"{topic.get('label')} {topic.get('score', 0):.2f}, sentiment {sentiment.get('label')}, "
                f"entities {', '.join(f'{t} {lab}' for t, lab in entities)}, "
                f"keywords {', '.join(k['term'] for k in row['keywords'][:3])}")
