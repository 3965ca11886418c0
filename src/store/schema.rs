//! The state store's schema as numbered migrations, one SQL text per backend. Applied in order
//! at open, each in its own transaction; PostgreSQL replicas serialise on an advisory lock so two
//! starting at once do not race.

/// (version, SQLite statements, PostgreSQL statements). Never edit a released migration: add one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, V1_SQLITE, V1_POSTGRES),
    (2, V2, V2),
    (3, V3, V3),
    (4, V4, V4),
    (5, V5, V5),
    (6, V6, V6),
    (7, V7, V7),
    (8, V8, V8),
    (9, V9, V9),
    (10, V10, V10),
];

/// Replicas that share the checks (`--cluster.shard auto`): each member's latest renewal in
/// the store's clock, and, per check, the members whose latest result is critical (a row only
/// while it is, so a healthy fleet writes nothing here).
const V10: &str = r#"
CREATE TABLE cluster_members (
    id           TEXT   PRIMARY KEY,
    location     TEXT,
    external_url TEXT   NOT NULL,
    started_ms   BIGINT NOT NULL,
    renewed_ms   BIGINT NOT NULL,
    owned        BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE cluster_critical (
    check_name TEXT   NOT NULL,
    member     TEXT   NOT NULL,
    since_ms   BIGINT NOT NULL,
    PRIMARY KEY (check_name, member)
);
CREATE INDEX cluster_critical_by_member ON cluster_critical (member);
"#;

/// The latest pings of each heartbeat check (Unix ms), so they survive a restart.
const V9: &str = r#"
CREATE TABLE heartbeats (
    check_name TEXT   PRIMARY KEY,
    success_ms BIGINT,
    start_ms   BIGINT,
    failure_ms BIGINT,
    exit_code  BIGINT
);
"#;

/// Talking back to Alertmanager: escalations re-posted while their subject stays unhealthy
/// (by whichever replica claims the re-post), and the silences held for runs.
const V8: &str = r#"
CREATE TABLE escalations (
    id               TEXT   PRIMARY KEY,
    chain            TEXT   NOT NULL,
    step             TEXT   NOT NULL,
    subject          TEXT   NOT NULL,
    labels_json      TEXT   NOT NULL,
    annotations_json TEXT   NOT NULL,
    generator_url    TEXT   NOT NULL,
    started_ms       BIGINT NOT NULL,
    resolved_ms      BIGINT,
    owner            TEXT   NOT NULL,
    last_posted_ms   BIGINT NOT NULL
);
CREATE INDEX escalations_active ON escalations (chain, subject) WHERE resolved_ms IS NULL;
CREATE TABLE silences (
    run_id     TEXT   PRIMARY KEY,
    silence_id TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    ends_ms    BIGINT NOT NULL,
    expired_ms BIGINT
);
"#;

/// A running step's process group, with what recognises it after a restart (a pid is reused;
/// not with the same start time on the same boot), so a medic killed mid-step can end it.
const V4: &str = r#"
ALTER TABLE recovery_attempts ADD COLUMN pgid BIGINT;
ALTER TABLE recovery_attempts ADD COLUMN boot_id TEXT;
ALTER TABLE recovery_attempts ADD COLUMN leader_start_ticks BIGINT;
ALTER TABLE recovery_attempts ADD COLUMN process_tag TEXT;
"#;

/// Pauses an operator made (`POST /api/v1/pauses`, `medic pause`): in the store so every replica
/// and every restart honours them. `matchers` is a JSON array of matcher texts; `ended_ms` is set
/// when one is ended early.
const V6: &str = r#"
CREATE TABLE recovery_pauses (
    id         TEXT   PRIMARY KEY,
    matchers   TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    ends_ms    BIGINT NOT NULL,
    ended_ms   BIGINT
);
CREATE INDEX recovery_pauses_by_end ON recovery_pauses (ends_ms);
"#;

/// Fencing tokens: one counter for the whole store, taken by every run as it begins, so a run
/// that began later always holds a larger token (in particular a later run of the same subject).
/// Runs from before have none.
const V5: &str = r#"
ALTER TABLE recovery_runs ADD COLUMN fencing_token BIGINT;
CREATE TABLE medic_fencing (id BIGINT PRIMARY KEY, token BIGINT NOT NULL);
INSERT INTO medic_fencing (id, token) VALUES (1, 0);
"#;

/// The run audit: every decision a run made, in order (`seq` within the run): a step that ran
/// (pointing at its attempt), was skipped (why; for a cooldown, when it ends), was held back
/// before the run started, or would have run in shadow mode. Attempts get an index by run, which
/// the audit and the takeover of abandoned runs look them up by.
const V7: &str = r#"
CREATE TABLE recovery_decisions (
    run_id     TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    step       TEXT,
    kind       TEXT   NOT NULL,
    reason     TEXT,
    until_ms   BIGINT,
    attempt_id BIGINT,
    detail     TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX recovery_attempts_by_run ON recovery_attempts (run_id);
"#;

/// One active run per (chain, subject) rather than per (chain, target): an alert about a check
/// and the check itself heal the same thing, and must not run the chain twice at once. Runs from
/// before keep their target as subject, so the new unique index holds for them.
const V3: &str = r#"
ALTER TABLE recovery_runs ADD COLUMN subject TEXT NOT NULL DEFAULT '';
UPDATE recovery_runs SET subject = target;
DROP INDEX recovery_runs_one_active;
CREATE UNIQUE INDEX recovery_runs_one_per_subject ON recovery_runs (chain, subject) WHERE finished_ms IS NULL;
"#;

/// When each recovery subject was last seen healthy, for `reset_after`.
const V2: &str = r#"
CREATE TABLE recovery_subjects (
    chain            TEXT   NOT NULL,
    subject          TEXT   NOT NULL,
    healthy_since_ms BIGINT,
    PRIMARY KEY (chain, subject)
);
"#;

const V1_SQLITE: &str = r#"
CREATE TABLE check_results (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    check_name       TEXT    NOT NULL,
    at_ms            BIGINT  NOT NULL,
    status           TEXT    NOT NULL,
    duration_seconds REAL    NOT NULL,
    message          TEXT    NOT NULL,
    measurements     TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX check_results_by_check ON check_results (check_name, at_ms);
CREATE INDEX check_results_by_time ON check_results (at_ms);

CREATE TABLE recovery_runs (
    id             TEXT    PRIMARY KEY,
    chain          TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    started_ms     BIGINT  NOT NULL,
    finished_ms    BIGINT,
    outcome        TEXT,
    owner          TEXT    NOT NULL,
    lease_until_ms BIGINT  NOT NULL,
    labels         TEXT    NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX recovery_runs_one_active ON recovery_runs (chain, target) WHERE finished_ms IS NULL;
CREATE INDEX recovery_runs_recent ON recovery_runs (started_ms);

CREATE TABLE recovery_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           TEXT    NOT NULL,
    chain            TEXT    NOT NULL,
    step             TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    trigger          TEXT    NOT NULL,
    started_ms       BIGINT  NOT NULL,
    finished_ms      BIGINT,
    result           TEXT,
    message          TEXT    NOT NULL DEFAULT '',
    exit_code        BIGINT,
    output           TEXT    NOT NULL DEFAULT '',
    duration_seconds REAL
);
CREATE INDEX recovery_attempts_by_chain ON recovery_attempts (chain, started_ms);
CREATE INDEX recovery_attempts_by_step ON recovery_attempts (chain, step, target, started_ms);

CREATE TABLE recovery_step_state (
    chain           TEXT   NOT NULL,
    step            TEXT   NOT NULL,
    target          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_attempt_ms BIGINT,
    last_result     TEXT,
    PRIMARY KEY (chain, step, target)
);

CREATE TABLE recovery_effectiveness (
    chain      TEXT   NOT NULL,
    step       TEXT   NOT NULL,
    value      REAL   NOT NULL,
    samples    BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (chain, step)
);
"#;

const V1_POSTGRES: &str = r#"
CREATE TABLE check_results (
    id               BIGSERIAL        PRIMARY KEY,
    check_name       TEXT             NOT NULL,
    at_ms            BIGINT           NOT NULL,
    status           TEXT             NOT NULL,
    duration_seconds DOUBLE PRECISION NOT NULL,
    message          TEXT             NOT NULL,
    measurements     TEXT             NOT NULL DEFAULT '[]'
);
CREATE INDEX check_results_by_check ON check_results (check_name, at_ms);
CREATE INDEX check_results_by_time ON check_results (at_ms);

CREATE TABLE recovery_runs (
    id             TEXT    PRIMARY KEY,
    chain          TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    started_ms     BIGINT  NOT NULL,
    finished_ms    BIGINT,
    outcome        TEXT,
    owner          TEXT    NOT NULL,
    lease_until_ms BIGINT  NOT NULL,
    labels         TEXT    NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX recovery_runs_one_active ON recovery_runs (chain, target) WHERE finished_ms IS NULL;
CREATE INDEX recovery_runs_recent ON recovery_runs (started_ms);

CREATE TABLE recovery_attempts (
    id               BIGSERIAL        PRIMARY KEY,
    run_id           TEXT             NOT NULL,
    chain            TEXT             NOT NULL,
    step             TEXT             NOT NULL,
    target           TEXT             NOT NULL,
    trigger          TEXT             NOT NULL,
    started_ms       BIGINT           NOT NULL,
    finished_ms      BIGINT,
    result           TEXT,
    message          TEXT             NOT NULL DEFAULT '',
    exit_code        BIGINT,
    output           TEXT             NOT NULL DEFAULT '',
    duration_seconds DOUBLE PRECISION
);
CREATE INDEX recovery_attempts_by_chain ON recovery_attempts (chain, started_ms);
CREATE INDEX recovery_attempts_by_step ON recovery_attempts (chain, step, target, started_ms);

CREATE TABLE recovery_step_state (
    chain           TEXT   NOT NULL,
    step            TEXT   NOT NULL,
    target          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_attempt_ms BIGINT,
    last_result     TEXT,
    PRIMARY KEY (chain, step, target)
);

CREATE TABLE recovery_effectiveness (
    chain      TEXT             NOT NULL,
    step       TEXT             NOT NULL,
    value      DOUBLE PRECISION NOT NULL,
    samples    BIGINT           NOT NULL,
    updated_ms BIGINT           NOT NULL,
    PRIMARY KEY (chain, step)
);
"#;
