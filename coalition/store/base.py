"""The store interface: the service sees the database only through this.

A `Store` runs a function inside one transaction (`write` or `read`) and hands it a `Tx`
whose methods are the only SQL in the program. A write function may run more than once (SQLite's
group commit reruns the members of a failed batch; MySQL retries deadlocks, lock timeouts and
connections lost, COMMIT included), so it must touch nothing outside the transaction:
coalition.usecases.context hands its effects back and applies them after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Row = dict[str, Any]

# Columns a job list may be sorted by (h_key is the dispatch order).
SORTABLE = frozenset(
    "id title user state priority affinity worker start_time duration run_done timeout command dir "
    "progress total total_finished total_errors total_working url retry updated_at created_at h_key "
    "reason".split()
)


class StoreError(RuntimeError):
    """The database is unreachable or refused an operation (a 503 to HTTP clients)."""


class SchemaError(StoreError):
    """The database schema is missing or outdated; the message says what to run."""


class Tx(Protocol):
    """One transaction. All ids are ints, all times float seconds since the epoch."""

    # -- jobs ---------------------------------------------------------------------------
    def job(self, job_id: int) -> Row | None:
        """The job row, or None."""

    def jobs(self, ids: Sequence[int], columns: Sequence[str] | None = None) -> list[Row]:
        """The rows of the existing jobs among `ids`, in id order (only `columns`, and the id,
        when given)."""

    def insert_job(self, fields: Mapping[str, Any]) -> int:
        """Insert a job row (every column but id) and return its id."""

    def update_job(self, job_id: int, fields: Mapping[str, Any]) -> int:
        """Set columns of one job; returns the number of rows changed (0 or 1)."""

    def update_jobs(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        """Set columns of many jobs (each its own values)."""

    def bump_job(
        self, job_id: int, deltas: Mapping[str, int | float], now: float, returning: bool = False
    ) -> Row | None:
        """Atomically add to counters of one job (safe under concurrent servers); with
        `returning`, the row as it is afterwards (at least id parent children total
        total_finished total_errors total_working pending state start_time has_dependents, the bumped
        columns and updated_at)."""

    def children(self, parent: int, columns: Sequence[str] | None = None) -> list[Row]:
        """Direct children of `parent`, in dispatch order."""

    def child_ids_by_title(self, parent: int, title: str) -> list[int]:
        """Ids of the children of `parent` titled `title`, oldest first."""

    def list_jobs(
        self,
        filters: Mapping[str, Any],
        sort: str,
        descending: bool,
        offset: int,
        limit: int | None,
    ) -> tuple[list[Row], int]:
        """A page of jobs and the total count; filters: parent, states, paused, user,
        text, affinity, worker, changed_since."""

    def delete_jobs(self, ids: Sequence[int]) -> None:
        """Delete the jobs, their dependency rows (both directions), their thumbnails and, for
        top groups of OpenJD jobs, their templates."""

    def put_thumbnail(self, job_ids: Sequence[int], source: int, mime: str, data: bytes, now: float) -> None:
        """Make `data` (an image of job `source`'s output) the thumbnail of each of `job_ids`."""

    def thumbnail(self, job_id: int) -> Row | None:
        """A job's thumbnail row (job_id, source, mime, data, updated_at), or None."""

    # working_jobs to ready_counts, the hand-out and what the reaper reads: store/sqlruns.py.
    def working_jobs(self) -> list[Row]:
        """Leaves in WORKING state: id, worker, start_time, timeout, run_event, ping_time."""

    def reaping_due(self, silent_before: float | None, now: float, grace: float) -> bool:
        """Whether the reaper has work, in three indexed probes instead of reading every
        worker and running job: an active worker, or a running leaf, last heard from before
        `silent_before` (None: none can be silent yet), a running leaf whose worker row is
        gone, or one past its timeout plus `grace` at `now` (scheduling.worker_silent and
        job_timed_out, in SQL)."""

    def first_ready(
        self,
        tagsets: Sequence[int],
        skip: Sequence[tuple[str, str]] = (),
        skip_limits: Sequence[str] = (),
    ) -> tuple[int, str, str, str] | None:
        """(id, h_key, title, limits) of the first dispatchable leaf among these tag sets, in
        dispatch order, locked for us where the dialect can (MySQL: FOR UPDATE SKIP LOCKED);
        leaves whose h_key falls in a `skip` range [lo, hi) are passed over, and so are
        leaves whose `limits` text is in `skip_limits` (limits without room)."""

    def claim(self, job_id: int, worker: str, event: int, now: float) -> Row | None:
        """Compare-and-set a ready leaf to WORKING for `worker`: the row as claimed (at least
        the pick columns and parent state worker run_event start_time has_dependents paused
        leaf tagset), or None if another server won it."""

    def ready_counts(self) -> dict[int, int]:
        """Dispatchable leaves counted by tag-set id."""

    def count_jobs_by_state(self) -> dict[str, int]:
        """Leaf counts by reported state (PAUSED counted apart)."""

    # -- dependencies -------------------------------------------------------------------
    def deps(self, job_id: int) -> list[int]:
        """Ids this job depends on."""

    def deps_of(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        """(job_id, dependency) pairs for the given jobs."""

    def set_deps(self, job_id: int, deps: Sequence[int]) -> None:
        """Replace the dependency list of a job."""

    def dependents(self, job_id: int) -> list[int]:
        """Ids of the jobs that depend on this one."""

    def unfinished_deps(self, job_id: int) -> int:
        """How many existing dependencies of this job are not FINISHED."""

    # -- tags -----------------------------------------------------------------------------
    def tagsets(self) -> dict[int, str]:
        """Every known effective tag set: id -> canonical text."""

    def tagset_id(self, text: str) -> int:
        """The id of a canonical tag-set text, created if new."""

    def affinities(self) -> dict[int, str]:
        """The numbered registry of affinity names."""

    def set_affinities(self, names: Mapping[int, str]) -> None:
        """Set (or clear, with "") numbered registry entries."""

    def register_affinities(self, names: Iterable[str]) -> None:
        """Add names not yet in the registry under the next free numbers."""

    # -- workers --------------------------------------------------------------------------
    def worker(self, name: str) -> Row | None:
        """The worker row, or None."""

    def insert_worker(self, fields: Mapping[str, Any]) -> None:
        """Create a worker row (ignored if another server created it meanwhile)."""

    def update_worker(
        self, name: str, fields: Mapping[str, Any], deltas: Mapping[str, int] | None = None
    ) -> int:
        """Set columns of a worker and add to its counters; returns rows changed."""

    def update_workers(self, names: Sequence[str], fields: Mapping[str, Any]) -> int:
        """Set the same columns on several workers (the slots of one host); returns rows
        changed."""

    def bump_worker(self, name: str, deltas: Mapping[str, int]) -> None:
        """Atomically add to a worker's counters."""

    def host_workers(self, host: str) -> list[Row]:
        """The worker rows (slots) of one host (`host` column), by name."""

    def hosts_alive(self, since: float) -> int:
        """How many worker processes (distinct `host`s) have been heard from since `since`."""

    def cpu_hosts_alive(self, since: float) -> bool:
        """Whether an active worker without GPUs has been heard from since `since` (a GPU
        host's `gpureserve = auto` keeps its GPUs for GPU jobs while there is one)."""

    def idle_hosts(self, since: float, limit: int) -> list[str]:
        """Up to `limit` hosts (`host` column; '' for workers that send none) with an active
        worker waiting for work and heard from since `since` (a slot holds fewer jobs while
        others wait: docs/protocol.md, "Held jobs")."""

    def workers(self, names: Sequence[str] | None = None) -> list[Row]:
        """All workers (or the named ones), by name."""

    def delete_workers(self, names: Sequence[str]) -> None:
        """Forget workers."""

    # -- events (store/sqlruns.py) ---------------------------------------------------------
    def insert_event(self, fields: Mapping[str, Any]) -> int:
        """Open a run event and return its id."""

    def update_event(self, event_id: int, fields: Mapping[str, Any]) -> None:
        """Close or amend an event."""

    def delete_event(self, event_id: int) -> None:
        """Remove an event (a run that did not start after all)."""

    def events(
        self, job: int | None, worker: str | None, since: float | None, limit: int, user: str | None = None
    ) -> list[Row]:
        """Events, newest first, filtered (`user`: only runs of that user's jobs)."""

    def finished_runs(self, parent: int) -> list[Row]:
        """The FINISHED runs of a job's direct children, oldest first: job_id, duration,
        cpu_time, peak_memory."""

    # -- host failures and blocks (store/blocks.py) ------------------------------------------
    def count_host_failure(
        self, job_id: int, worker: str, grp: int, now: float, forgotten: float, reason: str
    ) -> Row:
        """Count a failed run of a job on a worker; returns the row after the count."""

    def block_host(self, job_id: int, worker: str, until: float) -> None:
        """Block a worker from a job until `until`."""

    def failed_jobs_on(self, worker: str, since: float) -> int:
        """How many different jobs failed on a worker since `since` and on no other."""

    def host_blocks(self, now: float, worker: str | None = None, job_id: int | None = None) -> list[Row]:
        """Blocks in force at `now`."""

    def lift_host_blocks(self, job_id: int, worker: str | None = None) -> int:
        """Forget a job's failures (and blocks) on one worker or all; returns rows removed."""

    def blocked_keys(self, worker: str, now: float) -> list[str]:
        """The ordering keys of the jobs a worker is blocked from, in key order."""

    def purge_host_failures(self, before: float) -> int:
        """Forget old counts that block nothing."""

    # -- audit, login sessions, mail outbox ----------------------------------------------
    def insert_audit(self, fields: Mapping[str, Any]) -> int:
        """Record one audited action (columns at actor address action owner target detail)."""

    def audit(self, filters: Mapping[str, Any], limit: int) -> list[Row]:
        """Audit rows, newest first; filters: since, actor, action, target (a job id or worker
        name), viewer (rows this user made or that concern this user's jobs)."""

    def insert_session(self, key: str, user: str, created_at: float, expires: float) -> None:
        """Store a login session under `key` (a hash of the cookie)."""

    def session(self, key: str) -> Row | None:
        """The session row, or None."""

    def delete_session(self, key: str) -> int:
        """Forget a session (logout); returns rows deleted."""

    def purge_sessions(self, now: float) -> int:
        """Delete expired sessions."""

    def enqueue_mail(self, fields: Mapping[str, Any]) -> bool:
        """Queue a mail; False when its `dedupe` key was queued before."""

    def due_mail(self, now: float, limit: int, channel: str = "mail") -> list[Row]:
        """Queued messages of a channel ("mail", "webhook") whose next try is due, oldest
        first (locked where the dialect can)."""

    def update_mail(self, mail_id: int, fields: Mapping[str, Any]) -> None:
        """Record a delivery attempt's outcome."""

    def outbox(self, limit: int = 1000, channel: str | None = None) -> list[Row]:
        """Every outbox row, oldest first (tests and diagnostics)."""

    def purge_mail(self, before: float) -> int:
        """Delete sent or abandoned mails created before `before`."""

    def purge_events(self, before: float) -> int:
        """Delete closed events that started before `before`; returns how many."""

    # -- Open Job Description (store/sqlopenjd.py) -----------------------------------------
    def put_openjd_job(self, job_id: int, template: str, parameters: str, now: float) -> None:
        """Store an OpenJD job's template and parameter values (JSON texts) under its top
        group's id; delete_jobs removes them with the group."""
        ...

    def openjd_job(self, job_id: int) -> Row | None:
        """An OpenJD job's row (job_id, template, parameters, created_at), or None."""
        ...

    # -- submissions (idempotency keys) ----------------------------------------------------
    def submission(self, key: str) -> list[int] | None:
        """The job ids a submission under `key` created, or None if it is not known."""

    def insert_submission(self, key: str, job_ids: Sequence[int], now: float) -> None:
        """Record that the submission under `key` created `job_ids` (in its transaction)."""

    def purge_submissions(self, before: float) -> int:
        """Forget submission keys recorded before `before`."""

    # -- tree upkeep ----------------------------------------------------------------------
    def unkeyed_jobs(self) -> int:
        """How many jobs lack their derived fields (an empty h_key: a fresh C4 upgrade)."""

    def groups(self) -> list[Row]:
        """id, parent, h_depth of every job with children."""

    # -- job logs in the database (logstore = database) -------------------------------------
    def log_size(self, job_id: int) -> int:
        """Bytes stored for a job's log (0 without one)."""

    def log_append(self, job_id: int, data: bytes, max_bytes: int, marker: bytes = b"") -> int:
        """Append to a job's log, keeping at most `max_bytes` (then `marker` once, the rest
        dropped), safe against another server appending at once; returns bytes stored."""

    def log_read(self, job_id: int, offset: int = 0, limit: int | None = None) -> bytes:
        """A byte range of a job's log (empty past its end or without a log)."""

    def log_delete(self, job_ids: Sequence[int]) -> None:
        """Delete the logs of these jobs."""

    # -- failed logins ----------------------------------------------------------------------
    def login_failures(self, key: str, now: float) -> int:
        """Failed logins counted under `key` in its current window."""

    def add_login_failure(self, key: str, now: float, window: float) -> int:
        """Count one more failed login under `key` (atomic across servers); returns the count."""

    def purge_login_failures(self, now: float) -> int:
        """Forget counters whose window is over."""

    # -- coordination ---------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or renew a named lease; True if `holder` holds it until now + ttl."""

    # -- studio scheduling (store/sqlsched.py) ------------------------------------------
    def limits(self) -> list[Row]:
        """Every farm-wide limit, by name."""
        ...

    def limit(self, name: str) -> Row | None:
        """One limit, or None."""
        ...

    def put_limit(self, name: str, capacity: int, now: float, create_only: bool = False) -> None:
        """Create a limit or set its capacity."""
        ...

    def delete_limit(self, name: str) -> int:
        """Remove a limit."""
        ...

    def acquire_limit(self, name: str, amount: int, now: float) -> bool:
        """Take `amount` of a limit if it has room (a compare-and-set)."""
        ...

    def lower_limit(self, name: str, now: float, until: float) -> int:
        """Count one more licence as used outside the farm until `until`."""
        ...

    def release_limit(self, name: str, amount: int) -> None:
        """Give back `amount` of a limit."""
        ...

    def set_limit_external(self, name: str, external: int, now: float) -> None:
        """What the limit's command counted outside the farm."""
        ...

    def limit_users(self, name: str, limit: int = 100) -> list[Row]:
        """Running jobs holding a limit."""
        ...

    def ready_users(self) -> list[str]:
        """Users who own dispatchable leaves."""
        ...

    def running_by_user(self) -> dict[str, int]:
        """Running leaves counted by owner."""
        ...

    def first_ready_of(
        self, tagsets: Sequence[int], user: str, skip_limits: Sequence[str] = ()
    ) -> tuple[int, str, str, str] | None:
        """first_ready among one user's leaves."""
        ...

    def frame_dependents(self, job_id: int) -> list[int]:
        """Jobs that wait for `job_id` frame by frame."""
        ...

    def frame_units(self, job_id: int, span: tuple[int, int] | None) -> list[Row]:
        """Children of `job_id` overlapping `span` (None: all)."""
        ...

    def unfinished_frame_units(self, job_id: int, span: tuple[int, int] | None, limit: int = 1) -> list[Row]:
        """Unfinished children of `job_id` overlapping `span`."""
        ...

    def mark_has_dependents(self, job_id: int) -> None:
        """Flag a job and its children as having dependents."""
        ...


class Store(Protocol):
    """A database: transactions, schema management."""

    dialect: str

    def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in a write transaction, retried on deadlock; commit its result."""

    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in a read-only transaction."""

    def version(self) -> int | None:
        """The schema version: None for an empty database, 0/1 for Coalition 4 (or an
        interrupted upgrade of one), 2+ ours."""

    def check_schema(self) -> None:
        """Raise SchemaError unless the schema is exactly the current one."""

    def table_names(self) -> set[str]:
        """Lower-cased names of the tables in the database."""

    def init(self) -> None:
        """Create the schema in an empty database (SchemaError if not empty)."""

    def migrate(self) -> list[str]:
        """Upgrade to the current schema; returns what was done."""

    def reset(self) -> None:
        """Delete every row of every table (the schema stays)."""

    def close(self) -> None:
        """Close the connections of this process."""
