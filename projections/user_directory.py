"""user_directory: users with name, email, bio and status; searchable by name.

Search goes through ``name_key`` (the lower-cased name, collation "C"): one btree on
``(name_key, user_id)`` serves prefix search (``LIKE 'ab%'``) and keyset pagination in that
order; a trigram GIN index (pg_trgm, when the server has it) serves substring search.
"""

from __future__ import annotations

from eventray.aggregates.user import EmailChanged, ProfileUpdated, UserDeactivated, UserRegistered
from eventray.platform.projections import BatchWrites, Projection, Record, Table, handles

__all__ = ["UserDirectory"]


class UserDirectory(Projection):
    """One row per user, as of its latest event."""

    name = "user_directory"
    version = 1
    tables = (
        Table("users", ("user_id", "name", "name_key", "email", "bio", "status", "version"), key=("user_id",)),
    )
    schema_sql = """
        CREATE TABLE {schema}.users (
            user_id  text   PRIMARY KEY,
            name     text   NOT NULL,
            name_key text   COLLATE "C" NOT NULL,
            email    text   NOT NULL,
            bio      text   NOT NULL DEFAULT '',
            status   text   NOT NULL,
            version  bigint NOT NULL
        );
        CREATE INDEX users_by_name ON {schema}.users (name_key, user_id);
        CREATE INDEX users_by_status_name ON {schema}.users (status, name_key, user_id);
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
                BEGIN
                    CREATE EXTENSION IF NOT EXISTS pg_trgm;
                EXCEPTION WHEN insufficient_privilege OR unique_violation THEN
                    RAISE NOTICE 'pg_trgm not created here: %', SQLERRM;
                END;
            END IF;
            IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                EXECUTE 'CREATE INDEX users_name_trgm ON {schema}.users USING gin (name_key gin_trgm_ops)';
            END IF;
        END $$;
    """

    @handles(UserRegistered)
    def registered(self, record: Record, out: BatchWrites) -> None:
        e: UserRegistered = record.event
        out.create("users", {
            "user_id": record.envelope.aggregate_id, "name": e.name, "name_key": e.name.lower(),
            "email": e.email, "bio": "", "status": "active", "version": record.envelope.version,
        })

    @handles(ProfileUpdated)
    def profile_updated(self, record: Record, out: BatchWrites) -> None:
        e: ProfileUpdated = record.event
        out.update("users", record.envelope.aggregate_id, name=e.name, name_key=e.name.lower(), bio=e.bio,
                   version=record.envelope.version)

    @handles(EmailChanged)
    def email_changed(self, record: Record, out: BatchWrites) -> None:
        out.update("users", record.envelope.aggregate_id, email=record.event.email, version=record.envelope.version)

    @handles(UserDeactivated)
    def deactivated(self, record: Record, out: BatchWrites) -> None:
        out.update("users", record.envelope.aggregate_id, status="deactivated", version=record.envelope.version)
