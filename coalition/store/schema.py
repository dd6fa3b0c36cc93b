"""The schema of Coalition 5 (database version 4), written once for both dialects.

Types are spelled with placeholders that each dialect fills in, so SQLite and MySQL/MariaDB
get the same columns and the same indexes.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import columns

# Coalition 4 used schema versions 0 and 1 and the `Migrations` table; we keep counting there
# so that `--migrate` recognises a Coalition 4 database.
SCHEMA_VERSION = 9

JOB_COLUMNS = columns.JOB_COLUMNS
WORKER_COLUMNS = columns.WORKER_COLUMNS
JOB_PICK = columns.JOB_PICK


def check_columns(cols: Iterable[str], allowed: frozenset[str]) -> None:
    """Refuse a column name outside `allowed`: the SQL (store/sql.py and its mixins) puts only
    names from fixed lists into statement text."""
    for col in cols:
        if col not in allowed:
            raise ValueError(f"unknown column {col!r}")  # a programming error, never user input


def _table(name: str, cols: tuple[columns.Column, ...]) -> str:
    body = ",\n    ".join(c.ddl() for c in cols)
    return f"CREATE TABLE {name} (\n    {body}\n){{table_opts}}"


_TABLES = [
    _table("jobs", columns.JOBS),
    # The pick index: equality on the first four columns, then already in dispatch order.
    "CREATE INDEX c5_jobs_pick ON jobs (state, h_blocked, leaf, tagset, h_key)",
    "CREATE INDEX c5_jobs_parent ON jobs (parent, h_key)",
    # Fair share (usecases/fairshare.py): a user's first dispatchable job of a tag set, a seek.
    "CREATE INDEX c5_jobs_share ON jobs (state, h_blocked, leaf, tagset, user, h_key)",
    # Who waits frame by frame for a job (hierarchy.Tree.frame_release).
    "CREATE INDEX c5_jobs_frame_dep ON jobs (frame_dep)",
    # No index on updated_at or worker: every dispatch changes both, and each index is more
    # pages written per commit; the lists that filter on them are scoped by parent.
    """CREATE TABLE job_deps (
    job_id {big} NOT NULL,
    dependency {big} NOT NULL,
    PRIMARY KEY (job_id, dependency)
){table_opts}""",
    "CREATE INDEX c5_job_deps_dependency ON job_deps (dependency)",
    _table("workers", columns.WORKERS),
    "CREATE INDEX c5_workers_host ON workers (host)",
    """CREATE TABLE events (
    id {pk},
    worker VARCHAR(255) NOT NULL DEFAULT '',
    job_id {big} NOT NULL DEFAULT 0,
    job_title {text} NOT NULL,
    state VARCHAR(16) NOT NULL,
    start DOUBLE NOT NULL DEFAULT 0,
    duration DOUBLE NOT NULL DEFAULT 0,
    cpu_time DOUBLE NOT NULL DEFAULT 0,
    peak_memory {big} NOT NULL DEFAULT 0,
    reason VARCHAR(255) NOT NULL DEFAULT ''
){table_opts}""",
    "CREATE INDEX c5_events_job ON events (job_id)",
    "CREATE INDEX c5_events_start ON events (start)",
    # Failed runs of a job (or of its group: [server] blockscope) on one host, and the block
    # they led to (docs/failures.md). `grp` is the top job the failures belong to, so that
    # sick-host detection counts different jobs, not frames of one job.
    """CREATE TABLE host_failures (
    job_id {big} NOT NULL,
    worker VARCHAR(255) NOT NULL,
    grp {big} NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    last_at DOUBLE NOT NULL DEFAULT 0,
    blocked_until DOUBLE NOT NULL DEFAULT 0,
    reason VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, worker)
){table_opts}""",
    "CREATE INDEX c5_host_failures_worker ON host_failures (worker, last_at)",
    "CREATE INDEX c5_host_failures_grp ON host_failures (grp, last_at)",
    """CREATE TABLE affinities (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL
){table_opts}""",
    # One number per name: registrations from several servers at once are upserts that read
    # the winner back (SqlTx.register_affinities), never a second number for the same name.
    "CREATE UNIQUE INDEX c5_affinities_name ON affinities (name)",
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
    # Mail and webhook deliveries waiting for their background senders (`channel`); `dedupe`
    # makes a once-only message once only.
    """CREATE TABLE outbox (
    id {pk},
    created_at DOUBLE NOT NULL DEFAULT 0,
    dedupe VARCHAR(191) NULL UNIQUE,
    channel VARCHAR(16) NOT NULL DEFAULT 'mail',
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
    # The newest thumbnail of each job's output, and of each group's (any descendant's):
    # in the database so that every server has it; bounded in size by the worker protocol.
    """CREATE TABLE thumbnails (
    job_id {big} NOT NULL PRIMARY KEY,
    source {big} NOT NULL DEFAULT 0,
    mime VARCHAR(32) NOT NULL,
    data {blob} NOT NULL,
    updated_at DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    # Idempotency keys of recent submissions and the ids they created: a submission rerun
    # after a COMMIT whose answer was lost (or sent again by a client with the same
    # Idempotency-Key) returns the jobs it made instead of making them twice.
    """CREATE TABLE submissions (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    job_ids {text} NOT NULL,
    created_at DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    "CREATE INDEX c5_submissions_created ON submissions (created_at)",
    # Job logs in the database, so that every server reads and appends the same log (the
    # `logstore = database` default with MySQL; docs/deploy.md says why). Append-only: a
    # chunk's `pos` is its byte offset in the job's log, so a range or a tail is an index seek.
    """CREATE TABLE job_logs (
    job_id {big} NOT NULL,
    pos {big} NOT NULL,
    bytes INTEGER NOT NULL,
    data {blob} NOT NULL,
    PRIMARY KEY (job_id, pos)
){table_opts}""",
    # Failed passwords per (client address, login), shared by every server (the key is a
    # SHA-256, so the table names neither the address nor the login).
    """CREATE TABLE login_failures (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    expires DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    "CREATE INDEX c5_login_failures_expires ON login_failures (expires)",
    # Farm-wide limits (licences, shared resources): `in_use` is what running jobs hold,
    # `external` what the limit's command last counted outside the farm, `lowered` licences a
    # log rule found missing (counted as used outside until `lowered_until`; docs/scheduling.md).
    """CREATE TABLE farm_limits (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    capacity INTEGER NOT NULL DEFAULT 0,
    in_use INTEGER NOT NULL DEFAULT 0,
    external INTEGER NOT NULL DEFAULT 0,
    updated_at DOUBLE NOT NULL DEFAULT 0,
    lowered INTEGER NOT NULL DEFAULT 0,
    lowered_until DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    # Open Job Description jobs (docs/openjd.md): the template (the document as JSON) and the
    # job parameter values of each submission, once, under the id of its top group; its task
    # jobs name that id in their `openjd` column, and workers fetch these to run them.
    """CREATE TABLE openjd_jobs (
    job_id {big} NOT NULL PRIMARY KEY,
    template {text} NOT NULL,
    parameters {text} NOT NULL,
    created_at DOUBLE NOT NULL DEFAULT 0
){table_opts}""",
    """CREATE TABLE Migrations (
    database_version INTEGER NOT NULL
){table_opts}""",
]

TABLES = (
    "jobs",
    "job_deps",
    "workers",
    "events",
    "host_failures",
    "affinities",
    "tagsets",
    "leases",
    "sessions",
    "audit",
    "outbox",
    "thumbnails",
    "submissions",
    "job_logs",
    "login_failures",
    "farm_limits",
    "openjd_jobs",
    "Migrations",
)

SQLITE_TYPES = {
    "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "big": "INTEGER",
    "small": "INTEGER",
    "text": "TEXT",
    "key": "TEXT",
    "blob": "BLOB",
    "table_opts": "",
}
MYSQL_TYPES = {
    "pk": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
    "big": "BIGINT",
    "small": "TINYINT",
    "text": "MEDIUMTEXT",
    "blob": "MEDIUMBLOB",
    # Byte-wise ordering, and short enough to index (ascii: one byte a character).
    "key": "VARCHAR(1900) CHARACTER SET ascii COLLATE ascii_bin",
    "table_opts": " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
}


def ddl(dialect: str) -> list[str]:
    """The CREATE statements for a fresh database in the given dialect ("sqlite" or "mysql")."""
    types = SQLITE_TYPES if dialect == "sqlite" else MYSQL_TYPES
    return [stmt.format(**types) for stmt in _TABLES]
