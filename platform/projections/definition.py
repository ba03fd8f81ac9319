"""What a projection declares: its name, version, tables (DDL) and a handler per event type.

A projection is a plain class with no I/O. Its handlers turn decoded log records into
writes buffered by the :class:`~.writes.BatchWrites` the runtime hands them; the runtime owns
the Kafka reader, the PostgreSQL transaction and the offsets, and flushes a whole batch's
writes in bulk (COPY for new rows, pipelined updates for changed ones)::

    class AccountBalances(Projection):
        name = "account_balances"
        version = 1
        tables = (Table("accounts", ("account_id", "owner_id", ...), key=("account_id",)),)
        schema_sql = "CREATE TABLE {schema}.accounts (...);"

        @handles(AccountOpened)
        def opened(self, record: Record, out: BatchWrites) -> None:
            out.create("accounts", {...})
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import msgspec

from eventray.platform.errors import ConfigurationError
from eventray.platform.eventlog.envelope import DecodedRecord, Envelope

__all__ = ["Envelope", "Handler", "OnPoison", "Projection", "Record", "Table", "handles"]

#: what a handler receives: the envelope (ids, version, timestamp) and the typed event
Record = DecodedRecord
#: ``skip``: dead-letter a poison record and go on; ``stop``: dead-letter it and stop there
OnPoison = Literal["skip", "stop"]
Handler = Callable[[Any, Record, Any], None]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")


class Table(msgspec.Struct, frozen=True):
    """A table of a projection, as its handlers write it.

    Attributes:
        name: unqualified table name (created by the projection's ``schema_sql``).
        columns: the columns handlers write, in COPY order.
        key: the primary-key columns, for :meth:`BatchWrites.create` / ``update``; empty for
            append-only tables (:meth:`BatchWrites.append`).
    """

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...] = ()


def handles(*event_types: type) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a projection method as the handler of ``event_types``:
    ``method(self, record, out) -> None``."""

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        fn.__eventray_handles__ = event_types  # type: ignore[attr-defined]
        return fn

    return mark


class Projection:
    """Base of projection definitions.

    Class attributes to set:
        name: lower-case identifier; the schema of version ``n`` is ``proj_<name>_v<n>``.
        version: the definition's own version; bump it when handlers or tables change, and
            ``eventray projections`` flags a live build made by an older definition.
        tables: the :class:`Table` s the handlers write.
        schema_sql: DDL creating the tables (and indexes, views) in ``{schema}``; it runs
            once, in the transaction that registers the version.
        on_poison: ``"skip"`` (default) or ``"stop"``.
        enrich_timeout_s: how long an async :meth:`enrich` may take before the batch is retried.
        models: the model deployments (registry names) its :meth:`enrich` calls; ``eventray
            deploy`` and ``serve`` build and run it only where they are served.

    Optional hooks:
        enrich(batch): runs once per batch before the handlers, inside the batch's
            transaction; see :mod:`eventray.platform.projections.enrich`.
        build(settings): how the runtime constructs the projection (default ``cls()``); a
            projection whose ``enrich`` calls a service gets its client here.

    Handlers should check an event fully before buffering writes for it: when a handler
    raises, the record is dead-lettered, and writes it already buffered stay in the batch.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = ()
    schema_sql: ClassVar[str] = ""
    on_poison: ClassVar[OnPoison] = "skip"
    enrich_timeout_s: ClassVar[float] = 30.0
    models: ClassVar[tuple[str, ...]] = ()
    _handlers: ClassVar[dict[type, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[type, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for event_type in getattr(value, "__eventray_handles__", ()):
                    found[event_type] = attr
        cls._handlers = found

    def __init__(self) -> None:
        cls = type(self)
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigurationError(
                f"{cls.__qualname__}.name must be a lower-case identifier (letters, digits, _), got {name!r}"
            )
        if not cls.tables or "{schema}" not in cls.schema_sql:
            raise ConfigurationError(
                f"{cls.__qualname__} must declare its tables and a schema_sql that creates them in {{schema}}"
            )
        if cls.on_poison not in ("skip", "stop"):
            raise ConfigurationError(f"{cls.__qualname__}.on_poison must be 'skip' or 'stop'")
        self.handlers: dict[type, Callable[[Record, Any], None]] = {
            event_type: getattr(self, attr) for event_type, attr in cls._handlers.items()
        }

    @classmethod
    def build(cls, settings: Any) -> Projection:
        """The projection the runtime runs, given the settings (override to inject clients)."""
        return cls()

    def enrich(self, batch: Any) -> Any:
        """Optional per-batch step before the handlers (sync or ``async``); see :mod:`.enrich`.

        Returns one result per record of ``batch.records`` (``None`` to leave one out) or a
        mapping by log offset; handlers read theirs with ``out.enriched(record)``.
        """
        return None

    @property
    def enriches(self) -> bool:
        """Whether this projection declares an :meth:`enrich` step."""
        return type(self).enrich is not Projection.enrich

    def ddl(self, schema: str) -> str:
        """The DDL for ``schema`` (a name the runtime made: ``proj_<name>_v<n>``)."""
        return self.schema_sql.replace("{schema}", f'"{schema}"')
