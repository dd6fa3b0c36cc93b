"""The schema of Coalition 5 (database version 2), written once for both dialects.

Types are spelled with placeholders that each dialect fills in, so SQLite and MySQL/MariaDB
get the same columns and the same indexes.
"""

from __future__ import annotations

# Coalition 4 used schema versions 0 and 1 and the `Migrations` table; we keep counting there
# so that `--migrate` recognises a Coalition 4 database.
SCHEMA_VERSION = 3

JOB_COLUMNS = (
    "id",
    "parent",
    "title",
    "command",
    "dir",
    "environment",
    "state",
    "paused",
    "worker",
    "start_time",
    "duration",
    "ping_time",
    "run_done",
    "retry",
    "timeout",
    "priority",
    "affinity",
    "user",
    "url",
    "progress",
    "progress_pattern",
    "local_progress",
    "local_progress_pattern",
    "finished",
    "errors",
    "working",
    "total",
    "total_finished",
    "total_errors",
    "total_working",
    "children",
    "fail_count",
    "requeues",
    "child_fail_count",
    "pending",
    "leaf",
    "h_blocked",
    "h_key",
    "h_depth",
    "tagset",
    "run_event",
    "has_dependents",
    "log_offset",
    "created_at",
    "updated_at",
)

_TABLES = [
    """CREATE TABLE jobs (
    id {pk},
    parent {big} NOT NULL DEFAULT 0,
    title {text} NOT NULL,
    command {text} NOT NULL,
    dir {text} NOT NULL,
    environment {text} NOT NULL,
    state VARCHAR(16) NOT NULL,
    paused {small} NOT NULL DEFAULT 0,
    worker VARCHAR(255) NOT NULL DEFAULT '',
    start_time DOUBLE NOT NULL DEFAULT 0,
    duration DOUBLE NOT NULL DEFAULT 0,
    ping_time DOUBLE NOT NULL DEFAULT 0,
    run_done INTEGER NOT NULL DEFAULT 0,
    retry INTEGER NOT NULL DEFAULT 0,
    timeout INTEGER NOT NULL DEFAULT 0,
    priority {big} NOT NULL DEFAULT 1000,
    affinity {text} NOT NULL,
    user VARCHAR(255) NOT NULL DEFAULT '',
    url {text} NOT NULL,
    progress DOUBLE NOT NULL DEFAULT 0,
    progress_pattern {text} NOT NULL,
    local_progress DOUBLE NOT NULL DEFAULT 0,
    local_progress_pattern {text} NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    working INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    total_finished INTEGER NOT NULL DEFAULT 0,
    total_errors INTEGER NOT NULL DEFAULT 0,
    total_working INTEGER NOT NULL DEFAULT 0,
    children INTEGER NOT NULL DEFAULT 0,
    fail_count INTEGER NOT NULL DEFAULT 0,
    requeues INTEGER NOT NULL DEFAULT 0,
    child_fail_count INTEGER NOT NULL DEFAULT 0,
    pending {small} NOT NULL DEFAULT 0,
    leaf {small} NOT NULL DEFAULT 1,
    h_blocked {small} NOT NULL DEFAULT 0,
    h_key {key} NOT NULL,
    h_depth INTEGER NOT NULL DEFAULT 0,
    tagset INTEGER NOT NULL DEFAULT 0,
    run_event {big} NOT NULL DEFAULT 0,
    has_dependents {small} NOT NULL DEFAULT 0,
    log_offset {big} NOT NULL DEFAULT 0,
    created_at DOUBLE NOT NULL DEFAULT 0,
    updated_at DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    # The pick index: equality on the first four columns, then already in dispatch order.
    "CREATE INDEX c5_jobs_pick ON jobs (state, h_blocked, leaf, tagset, h_key)",
    "CREATE INDEX c5_jobs_parent ON jobs (parent, h_key)",
    # No index on updated_at or worker: every dispatch changes both, and each index is more
    # pages written per commit; the lists that filter on them are scoped by parent.
    """CREATE TABLE job_deps (
    job_id {big} NOT NULL,
    dependency {big} NOT NULL,
    PRIMARY KEY (job_id, dependency)
){table_opts}""",
    "CREATE INDEX c5_job_deps_dependency ON job_deps (dependency)",
    """CREATE TABLE workers (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    ip VARCHAR(64) NOT NULL DEFAULT '',
    affinity {text} NOT NULL,
    affinity_set {small} NOT NULL DEFAULT 0,
    state VARCHAR(16) NOT NULL,
    ping_time DOUBLE NOT NULL DEFAULT 0,
    finished INTEGER NOT NULL DEFAULT 0,
    error INTEGER NOT NULL DEFAULT 0,
    last_job {big} NOT NULL DEFAULT 0,
    current_job {big} NOT NULL DEFAULT 0,
    current_event {big} NOT NULL DEFAULT 0,
    cpu {text} NOT NULL,
    free_memory {big} NOT NULL DEFAULT 0,
    total_memory {big} NOT NULL DEFAULT 0,
    active {small} NOT NULL DEFAULT 1,
    start_time DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    """CREATE TABLE events (
    id {pk},
    worker VARCHAR(255) NOT NULL DEFAULT '',
    job_id {big} NOT NULL DEFAULT 0,
    job_title {text} NOT NULL,
    state VARCHAR(16) NOT NULL,
    start DOUBLE NOT NULL DEFAULT 0,
    duration DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    "CREATE INDEX c5_events_job ON events (job_id)",
    "CREATE INDEX c5_events_start ON events (start)",
    """CREATE TABLE affinities (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL
){table_opts}""",
    """CREATE TABLE tagsets (
    id {pk},
    tags VARCHAR(512) NOT NULL UNIQUE
){table_opts}""",
    """CREATE TABLE leases (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    holder VARCHAR(255) NOT NULL,
    expires DOUBLE NOT NULL
){table_opts}""",
    # Login sessions of the web page: the key is the SHA-256 of the cookie, never the cookie
    # itself, so that reading the database does not hand out sessions.
    """CREATE TABLE sessions (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    user VARCHAR(255) NOT NULL,
    created_at DOUBLE NOT NULL DEFAULT 0,
    expires DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    "CREATE INDEX c5_sessions_expires ON sessions (expires)",
    # Who did what: one row per action and job owner (`target` is ",id,id," or ",name,").
    """CREATE TABLE audit (
    id {pk},
    at DOUBLE NOT NULL DEFAULT 0,
    actor VARCHAR(255) NOT NULL DEFAULT '',
    address VARCHAR(64) NOT NULL DEFAULT '',
    action VARCHAR(32) NOT NULL,
    owner VARCHAR(255) NOT NULL DEFAULT '',
    target {text} NOT NULL,
    detail {text} NOT NULL
){table_opts}""",
    "CREATE INDEX c5_audit_at ON audit (at)",
    # Mail waiting for the background sender; `dedupe` makes a once-only mail once only.
    """CREATE TABLE outbox (
    id {pk},
    created_at DOUBLE NOT NULL DEFAULT 0,
    dedupe VARCHAR(191) NULL UNIQUE,
    recipient VARCHAR(320) NOT NULL,
    subject {text} NOT NULL,
    body {text} NOT NULL,
    status VARCHAR(8) NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try DOUBLE NOT NULL DEFAULT 0,
    last_error {text} NOT NULL,
    sent_at DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    "CREATE INDEX c5_outbox_due ON outbox (status, next_try)",
    # Idempotency keys of recent submissions and the ids they created: a submission rerun
    # after a COMMIT whose answer was lost (or sent again by a client with the same
    # Idempotency-Key) returns the jobs it made instead of making them twice.
    """CREATE TABLE submissions (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    job_ids {text} NOT NULL,
    created_at DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    "CREATE INDEX c5_submissions_created ON submissions (created_at)",
    """CREATE TABLE Migrations (
    database_version INTEGER NOT NULL
){table_opts}""",
]

TABLES = (
    "jobs",
    "job_deps",
    "workers",
    "events",
    "affinities",
    "tagsets",
    "leases",
    "sessions",
    "audit",
    "outbox",
    "submissions",
    "Migrations",
)

SQLITE_TYPES = {
    "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "big": "INTEGER",
    "small": "INTEGER",
    "text": "TEXT",
    "key": "TEXT",
    "table_opts": "",
}
MYSQL_TYPES = {
    "pk": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
    "big": "BIGINT",
    "small": "TINYINT",
    "text": "MEDIUMTEXT",
    # Byte-wise ordering, and short enough to index (ascii: one byte a character).
    "key": "VARCHAR(1900) CHARACTER SET ascii COLLATE ascii_bin",
    "table_opts": " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
}


def ddl(dialect: str) -> list[str]:
    """The CREATE statements for a fresh database in the given dialect ("sqlite" or "mysql")."""
    types = SQLITE_TYPES if dialect == "sqlite" else MYSQL_TYPES
    return [stmt.format(**types) for stmt in _TABLES]
