-- tibridge store schema, version 2: the C2 triage playbook's alerts, cases and review queue.
--
-- Same conventions as 0001: Unix seconds in BIGINT, JSON as TEXT, SQLite-only spots marked.

-- One row per alert (detection) the playbook took on. The row is inserted with
-- `INSERT ... ON CONFLICT DO NOTHING` BEFORE any work, so of two runs (or two instances)
-- only the one whose insert landed handles the alert: each detection is handled once even
-- across restarts. `handled_at` is set in the same transaction as the case; a claim left
-- without it (a crash mid-alert) may be taken over once it is older than a set age.
CREATE TABLE triage_alerts (
    alert_id   TEXT   PRIMARY KEY,
    source     TEXT   NOT NULL,
    first_seen BIGINT NOT NULL,
    claimed_at BIGINT NOT NULL,
    handled_at BIGINT,
    case_id    BIGINT
);

-- One case per handled alert: everything known and done, as JSON in `summary` (the alert,
-- its objects, VirusTotal figures, sandbox verdict and link, the deciding rule of each
-- object, the actions taken and the vendors' answers).
CREATE TABLE cases (
    id         INTEGER PRIMARY KEY,                  -- SQLITE: rowid alias
    alert_id   TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    status     TEXT   NOT NULL CHECK (status IN ('open', 'closed', 'review', 'blocked')),
    summary    TEXT   NOT NULL
);
CREATE INDEX cases_by_alert ON cases (alert_id);

-- What an analyst must look at: one object of a case, the action the playbook proposes
-- (JSON) and why it did not act alone. Decided once: pending -> approved | rejected.
CREATE TABLE review_queue (
    id              INTEGER PRIMARY KEY,             -- SQLITE: rowid alias
    case_id         BIGINT NOT NULL REFERENCES cases (id),
    kind            TEXT   NOT NULL,
    value           TEXT   NOT NULL,
    proposed_action TEXT   NOT NULL,
    reason          TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    status          TEXT   NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by      TEXT,
    decided_at      BIGINT,
    decision_reason TEXT
);
CREATE INDEX review_queue_by_status ON review_queue (status, id);
CREATE INDEX review_queue_by_case ON review_queue (case_id);
