"""The event index every app gets: one row per event, by aggregate and by correlation id.

Kafka finds a record by partition and offset only. The console (and anyone debugging) asks
for "the events of Account a-1, newest first" or "everything request r-42 caused"; this
projection keeps those lookups cheap. It is an ordinary projection (own schema per version,
offsets in the batch's transaction, ``eventray replay``), made per app by :func:`event_index`
because it handles every event type the app's aggregates emit. :class:`~eventray.platform.app.App`
adds it to the app's projections unless ``App(..., event_index=False)``.

The payload is the decoded event (current schema, upcast) as JSON, so reading it back needs
no codec; its ``type`` member is the event's tag.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgspec

from eventray.platform.projections.definition import Projection, Record, Table

__all__ = ["COLUMNS", "INDEX_SUFFIX", "event_index", "event_index_name", "index_row"]

INDEX_SUFFIX = "_event_index"
#: a projection name is at most 41 characters (``definition._NAME``)
_MAX_NAME = 41
_UTC = dt.timezone.utc
_encode_json = msgspec.json.Encoder().encode

COLUMNS = ("partition", "offset", "aggregate_type", "aggregate_id", "version", "event_type", "ts",
           "command_id", "correlation_id", "subject", "payload")

_SCHEMA_SQL = """
    CREATE TABLE {schema}.events (
        partition      integer     NOT NULL,
        "offset"       bigint      NOT NULL,
        aggregate_type text        NOT NULL,
        aggregate_id   text        NOT NULL,
        version        bigint      NOT NULL,
        event_type     text        NOT NULL,
        ts             timestamptz NOT NULL,
        command_id     text,
        correlation_id text,
        subject        text,
        payload        jsonb       NOT NULL,
        PRIMARY KEY (partition, "offset")
    );
    CREATE INDEX events_by_aggregate ON {schema}.events (aggregate_type, aggregate_id, version);
    CREATE INDEX events_by_correlation ON {schema}.events (correlation_id);
    CREATE INDEX events_by_command ON {schema}.events (command_id text_pattern_ops);
"""


def event_index_name(app_name: str) -> str:
    """The index projection's name for app ``app_name``: ``<app>_event_index``, ``-`` as ``_``,
    the app part cut so that the whole stays a projection name (41 characters at most)."""
    base = re.sub(r"[^a-z0-9_]", "_", app_name.lower().replace("-", "_"))
    return base[: _MAX_NAME - len(INDEX_SUFFIX)] + INDEX_SUFFIX


def index_row(record: Record) -> tuple[Any, ...]:
    """The ``events`` row of ``record``, in :data:`COLUMNS` order (COPY text: jsonb as JSON text)."""
    env = record.envelope
    return (record.partition, record.offset, env.aggregate_type, env.aggregate_id, env.version, env.event_type,
            dt.datetime.fromtimestamp(env.timestamp / 1000, tz=_UTC),  # envelope timestamps are epoch ms
            env.command_id, env.correlation_id, env.subject, _encode_json(record.event).decode())


def _index(self: Projection, record: Record, out: Any) -> None:
    out.append("events", index_row(record))


def event_index(app: Any) -> type[Projection]:
    """The event-index projection of ``app`` (an :class:`~eventray.platform.app.App`): a class
    named :func:`event_index_name` of the app, with one handler for every event type of it.

    Table ``events``: ``(partition, "offset")`` key; indexes on ``(aggregate_type,
    aggregate_id, version)``, ``correlation_id`` and ``command_id`` (prefix search, as a
    saga's commands share the saga id as prefix).
    """
    name = event_index_name(app.name)
    cls: type[Projection] = type(name, (Projection,), {
        "__module__": __name__,
        "__doc__": f"Every event of app {app.name!r}, by aggregate and by correlation id.",
        "name": name,
        "version": 1,
        "tables": (Table("events", COLUMNS),),
        "schema_sql": _SCHEMA_SQL,
        "index": _index,
    })
    cls._handlers = {event_type: "index" for event_type in app.event_types}
    return cls
