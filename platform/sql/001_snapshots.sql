-- Aggregate snapshots and per-partition snapshot checkpoints (ARCHITECTURE.md, write path 4-5).
--
-- A snapshot is keyed by topic too: one database may serve several deployments or topics,
-- and the same aggregate id in two topics is two different aggregates.

CREATE TABLE IF NOT EXISTS eventray_snapshots (
    topic                text        NOT NULL,
    aggregate_type       text        NOT NULL,
    aggregate_id         text        NOT NULL,
    -- number of events folded into state (the aggregate's version after the last one)
    version              bigint      NOT NULL CHECK (version >= 0),
    partition            integer     NOT NULL CHECK (partition >= 0),
    -- log offset of the last event folded into state
    log_offset           bigint      NOT NULL CHECK (log_offset >= 0),
    state                bytea       NOT NULL,
    state_schema_version integer     NOT NULL DEFAULT 1 CHECK (state_schema_version >= 0),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, aggregate_type, aggregate_id)
);

-- Recovery loads a whole partition at once.
CREATE INDEX IF NOT EXISTS eventray_snapshots_partition_idx
    ON eventray_snapshots (topic, partition);

CREATE TABLE IF NOT EXISTS eventray_snapshot_checkpoints (
    topic             text        NOT NULL,
    partition         integer     NOT NULL CHECK (partition >= 0),
    -- which shard incarnation wrote it last (diagnostics only)
    owner             text,
    -- recovery resumes reading the partition here: every event at an offset below it is
    -- folded into the partition's snapshots (Kafka's committed-offset convention)
    checkpoint_offset bigint      NOT NULL CHECK (checkpoint_offset >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
