-- Projection runtime tables (ARCHITECTURE.md, "The read path").
--
-- A projection's read model lives in its own schema per version (proj_<name>_v<n>); these
-- tables, owned by the runtime, say which version is current, how far each version has read
-- each partition, and what it could not apply.

-- One row per projection: the version queries read. Switching is one UPDATE of this row.
CREATE TABLE IF NOT EXISTS eventray_projections (
    name            text        PRIMARY KEY,
    current_version integer     NOT NULL CHECK (current_version >= 1),
    switched_at     timestamptz NOT NULL DEFAULT now()
);

-- Every version built or being built, with the log it reads and its lifecycle.
CREATE TABLE IF NOT EXISTS eventray_projection_versions (
    name               text        NOT NULL,
    version            integer     NOT NULL CHECK (version >= 1),
    schema_name        text        NOT NULL UNIQUE,
    topic              text        NOT NULL,
    partitions         integer     NOT NULL CHECK (partitions >= 1),
    -- the projection class's own definition version when this build started: a live build
    -- made by an older definition needs a replay
    definition_version integer     NOT NULL DEFAULT 1,
    -- building: replaying towards the head; live: current; stopped: a runner stopped on a
    -- poison event; retired: replaced (its schema is dropped)
    status             text        NOT NULL DEFAULT 'building'
                       CHECK (status IN ('building', 'live', 'stopped', 'retired')),
    status_reason      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- Per version and partition: the next offset to read. Written in the same transaction as
-- the read model's rows, so the read model always equals the fold of the log below it.
CREATE TABLE IF NOT EXISTS eventray_projection_offsets (
    name        text        NOT NULL,
    version     integer     NOT NULL,
    partition   integer     NOT NULL CHECK (partition >= 0),
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    -- records applied (or skipped as not handled) so far, for progress and rates
    applied     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version, partition),
    FOREIGN KEY (name, version) REFERENCES eventray_projection_versions (name, version) ON DELETE CASCADE
);

-- Poison records: undecodable, or a handler or the database refused them.
CREATE TABLE IF NOT EXISTS eventray_projection_dead_letters (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL,
    version     integer     NOT NULL,
    partition   integer     NOT NULL,
    log_offset  bigint      NOT NULL,
    reason      text        NOT NULL,
    event_type  text,
    record_key  bytea,
    raw         bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version, partition, log_offset),
    FOREIGN KEY (name, version) REFERENCES eventray_projection_versions (name, version) ON DELETE CASCADE
);
