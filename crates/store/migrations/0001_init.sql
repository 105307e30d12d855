-- tibridge store schema, version 1.
--
-- Written in the SQL that SQLite and PostgreSQL share wherever they can. The SQLite-only
-- spots, which a PostgreSQL migration set must spell its own way, are marked "SQLITE:".
-- Times are Unix seconds (UTC) in BIGINT columns; booleans are BOOLEAN (0/1 in SQLite);
-- indicator kinds and TLP levels are their stable `as_str()` names; tags are JSON text.

-- Indicators are not a table: the catalog is computed from active observations (an
-- indicator is a (kind, value) with at least one), and later tables refer to an indicator
-- by (kind, value). A separate indicators table with its own random-order unique index
-- was measured to cost a large share of the ingest for no reader.

-- Observations: one source saying one thing about one indicator, keyed by
-- (source_id, source_ref, kind). `content_hash` is a stable 64-bit hash of every content
-- column, so an upsert can tell "same as stored" with one integer comparison and write
-- nothing. `retired_at` is set when the source withdrew the item (deleted flag) or a complete
-- read of the source no longer contained it; retired rows are kept so a reappearing item is
-- revived, not re-created. `revision` counts the times the source changed the item
-- (0 = as first stored), which also tells an upsert's insert from its update.
CREATE TABLE observations (
    source_id    TEXT    NOT NULL,
    source_ref   TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    event_ref    TEXT,
    event_info   TEXT,
    tags         TEXT    NOT NULL,
    tlp          TEXT,
    confidence   INTEGER,
    to_ids       BOOLEAN NOT NULL,
    first_seen   BIGINT,
    last_seen    BIGINT,
    valid_until  BIGINT,
    modified     BIGINT,
    deleted      BOOLEAN NOT NULL,
    content_hash BIGINT  NOT NULL,
    revision     BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    retired_at   BIGINT,
    PRIMARY KEY (source_id, source_ref, kind)
) WITHOUT ROWID;                                    -- SQLITE: PG stores it as a heap with this primary key

-- The rows live in the primary key's b-tree (WITHOUT ROWID): comparing a batch with the
-- catalog is one descent per key with the row at hand, and a merge in key order appends
-- to one tree instead of filling a table and a separate random-order key index. Measured
-- on a million observations, see the store's docs.

-- No index by indicator: the catalog is read whole and sorted by SQLite when read (about
-- as fast as walking an index whose rows are scattered), while keeping such an index in a
-- random order cost more than the rest of an ingest together. Measured, see the store's docs.

-- One row per read of a source, for `tibridge status` and for the history of what happened.
CREATE TABLE source_reads (
    id          INTEGER PRIMARY KEY,                 -- SQLITE: rowid alias
    source_id   TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT,
    complete    BOOLEAN NOT NULL DEFAULT FALSE,
    error       TEXT,
    items_read  BIGINT  NOT NULL DEFAULT 0,
    skipped     BIGINT  NOT NULL DEFAULT 0,
    -- The first skipped items as a JSON array of `item: reason` strings (bounded).
    skipped_sample TEXT,
    inserted    BIGINT  NOT NULL DEFAULT 0,
    updated     BIGINT  NOT NULL DEFAULT 0,
    unchanged   BIGINT  NOT NULL DEFAULT 0,
    retired     BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX source_reads_by_source ON source_reads (source_id, id);

-- Where an incremental source resumes; only ever advanced by an error-free read.
CREATE TABLE source_cursors (
    source_id  TEXT   PRIMARY KEY,
    cursor     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Per sink, what tibridge has confirmed is present there. tibridge only removes what is here.
CREATE TABLE ledger (
    sink_id    TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    remote_id  TEXT,
    added_at   BIGINT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (sink_id, kind, value)
);

CREATE TABLE sync_runs (
    id          INTEGER PRIMARY KEY,                 -- SQLITE: rowid alias
    sink_id     TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT  NOT NULL,
    dry_run     BOOLEAN NOT NULL,
    additions   BIGINT  NOT NULL,
    removals    BIGINT  NOT NULL,
    failures    BIGINT  NOT NULL,
    outcome     TEXT    NOT NULL
);
CREATE INDEX sync_runs_by_sink ON sync_runs (sink_id, id);

-- Every change made (or tried) to an outside system. Append-only: the store has no
-- UPDATE or DELETE path for it, and the triggers below refuse one from anywhere else.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,                    -- SQLITE: rowid alias
    at       BIGINT NOT NULL,
    actor    TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    target   TEXT   NOT NULL,
    item     TEXT   NOT NULL,
    reason   TEXT   NOT NULL,
    response TEXT   NOT NULL
);

-- SQLITE: trigger bodies with RAISE; PG needs a trigger function raising an exception.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;

-- Answers of enrichment providers (VirusTotal, Intezer), reused until they expire.
CREATE TABLE enrichment_cache (
    provider   TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (provider, kind, value)
);
