"""support_inbox: the users' support messages, each analysed by the text models.

One row per ``SupportMessageSent``, keyed ``<user id>/<version>`` (the id the command's answer
gives). Each batch is analysed once, in :meth:`SupportInbox.enrich`: the topic (BBC-news
classes), the sentiment, the named entities (spaCy) and the keywords come from the model
deployments, in requests of up to ``chunk`` texts each, and an extractive summary is computed
here (:func:`eventray.platform.ml.text.summarize`). The handler writes the row in the same
transaction as the offsets, like ``alerts``: a batch that does not commit leaves nothing, and a
replay analyses the same texts again.

A text the models refuse (``MODEL_INPUT_*``: the command's checks make this unlikely, but an
older event or a tighter model limit can) is stored with ``analysis_error`` set to the error's
code and no labels: one bad message neither stalls the inbox nor dead-letters its batch. Any
other failure (a model deployment down) fails the batch, which the runner retries, so no message
is stored unanalysed for a reason that would pass. Each row records the model versions that
analysed it; a rebuild (``eventray replay support_inbox``) analyses with the defaults of its time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import msgspec

from eventray.aggregates.user import SupportMessageSent
from eventray.platform.errors import ConfigurationError
from eventray.platform.ml.text import TextAnalysis
from eventray.platform.projections import BatchWrites, Projection, Record, Table, handles

__all__ = ["Analyser", "SupportInbox", "message_id"]

_UTC = dt.timezone.utc
def message_id(user_id: str, version: int) -> str:
    """The id of the support message that made ``user_id``'s aggregate ``version``."""
    return f"{user_id}/{version}"


class Analyser(Protocol):
    """What :meth:`SupportInbox.enrich` needs: ``eventray.serving.models.TextAnalyser``."""

    async def analyse(self, texts: list[str]) -> list[TextAnalysis]: ...


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class SupportInbox(Projection):
    """Append-only: one analysed row per support message."""

    name = "support_inbox"
    models = ("sentiment", "topics", "entities")
    version = 1
    tables = (
        Table("support_messages", ("message_id", "user_id", "sent_at", "body", "topic", "topic_score", "sentiment",
                                   "sentiment_score", "entities", "keywords", "summary", "model_versions",
                                   "analysis_error", "log_partition", "log_offset")),
    )
    schema_sql = """
        CREATE TABLE {schema}.support_messages (
            message_id      text             PRIMARY KEY,
            user_id         text             NOT NULL,
            sent_at         timestamptz      NOT NULL,
            body            text             NOT NULL,
            topic           text,
            topic_score     double precision,
            sentiment       text,
            sentiment_score double precision,
            entities        jsonb            NOT NULL,
            keywords        jsonb            NOT NULL,
            summary         jsonb            NOT NULL,
            model_versions  jsonb            NOT NULL,
            analysis_error  text,
            log_partition   integer          NOT NULL,
            log_offset      bigint           NOT NULL
        );
        CREATE INDEX support_messages_newest ON {schema}.support_messages (sent_at DESC, message_id);
        CREATE INDEX support_messages_by_user ON {schema}.support_messages (user_id, sent_at DESC);
    """

    def __init__(self, *, analyser: Analyser | None = None) -> None:
        super().__init__()
        self._analyser = analyser

    @classmethod
    def build(cls, settings: Any) -> SupportInbox:
        """Analysis through the text deployments of ``settings.ml_app_name`` (Serve handles)."""
        from eventray.serving.models import MLClient, TextAnalyser

        return cls(analyser=TextAnalyser(client=MLClient.connect(settings, models=cls.models)))

    async def enrich(self, batch: Any) -> list[TextAnalysis]:
        """Analyse the batch's messages in one pass (see the module docstring)."""
        if self._analyser is None:
            raise ConfigurationError("the support inbox has no analyser; build it with SupportInbox.build(settings)")
        records: list[Record] = batch.records
        return await self._analyser.analyse([r.event.body for r in records])

    @handles(SupportMessageSent)
    def sent(self, record: Record, out: BatchWrites) -> None:
        a: TextAnalysis = out.enriched(record)
        env = record.envelope
        topic, sentiment = a.topic or {}, a.sentiment or {}
        out.append("support_messages", (
            message_id(env.aggregate_id, env.version), env.aggregate_id,
            dt.datetime.fromtimestamp(env.timestamp / 1000, tz=_UTC), record.event.body,
            topic.get("label"), topic.get("score"), sentiment.get("label"), sentiment.get("score"),
            _json(a.entities), _json(a.keywords), _json(a.summary), _json(a.model_versions), a.error,
            record.partition, record.offset))
