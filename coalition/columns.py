"""The schema registry: every column of the jobs and workers tables, declared once.

Pure data, importing nothing of ours, so that every layer may read it: the store builds its
DDL and its column checks from it, the model its field lists, the use cases their insert
rows, plain edits and the pick payload, the views the objects the API serves. Adding a job
attribute is one `Column` here (plus its validation in model.py if clients may set it, and a
numbered migration): see CONTRIBUTING.md.

The order is the order of the documented job and worker objects (chapter 7), then the
internal columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# SQL type spellings; {placeholders} are filled per dialect by store/schema.py.
PK = "{pk}"
BIG = "{big} NOT NULL DEFAULT {default}"
SMALL = "{small} NOT NULL DEFAULT {default}"
INT = "INTEGER NOT NULL DEFAULT {default}"
REAL = "DOUBLE NOT NULL DEFAULT {default}"
TEXT = "{text} NOT NULL"  # MySQL TEXT columns take no DEFAULT: inserts always give one
NAME = "VARCHAR(255) NOT NULL DEFAULT {default}"
STATE = "VARCHAR(16) NOT NULL"
KEY = "{key} NOT NULL"


@dataclass(frozen=True)
class Column:
    """One column.

    `default` is the value of a new row (None for the primary key). `api`: part of the
    object the REST API serves. `settable`: a client may give it at submission and, with
    `edit="plain"`, change it by a plain copy in an edit (other edits have their own rules
    in usecases/operator.py). `pick`: sent to the worker with the job it picked.
    """

    name: str
    sql: str
    default: Any
    api: bool = True
    settable: bool = False
    edit: str = ""
    pick: bool = False

    def ddl(self) -> str:
        """The column's definition, with dialect placeholders."""
        if "{default}" not in self.sql:
            return f"{self.name} {self.sql}"
        default = f"'{self.default}'" if isinstance(self.default, str) else repr(self.default)
        return f"{self.name} {self.sql.replace('{default}', default)}"


JOBS: tuple[Column, ...] = (
    Column("id", PK, None, pick=True),
    Column("parent", BIG, 0, settable=True, edit="parent"),
    Column("title", TEXT, "", settable=True, edit="plain", pick=True),
    Column("command", TEXT, "", settable=True, edit="command", pick=True),
    Column("dir", TEXT, ".", settable=True, edit="plain", pick=True),
    Column("environment", TEXT, "", settable=True, edit="plain", pick=True),
    Column("state", STATE, "WAITING", settable=True, edit="state"),
    Column("paused", SMALL, 0, settable=True, edit="state"),
    Column("worker", NAME, ""),
    Column("start_time", REAL, 0.0),
    Column("duration", REAL, 0.0),
    Column("ping_time", REAL, 0.0),
    Column("run_done", INT, 0),
    Column("retry", INT, 0, settable=True, edit="plain"),
    Column("timeout", INT, 0, settable=True, edit="plain", pick=True),
    Column("priority", BIG, 1000, settable=True, edit="priority"),
    Column("affinity", TEXT, "", settable=True, edit="affinity"),
    Column("user", NAME, "", settable=True, edit="plain", pick=True),
    Column("finished", INT, 0),
    Column("errors", INT, 0),
    Column("working", INT, 0),
    Column("total", INT, 0),
    Column("total_finished", INT, 0),
    Column("total_errors", INT, 0),
    Column("total_working", INT, 0),
    Column("url", TEXT, "", settable=True, edit="plain"),
    # Where the job writes its frames (`/render/out/f_####.png`): the worker thumbnails the newest.
    Column("output", TEXT, "", settable=True, edit="plain", pick=True),
    Column("progress", REAL, 0.0),
    Column("progress_pattern", TEXT, "PROGRESS:%percent", settable=True, edit="plain", pick=True),
    Column("local_progress", REAL, 0.0),
    Column("local_progress_pattern", TEXT, "", settable=True, edit="plain", pick=True),
    Column("fail_count", INT, 0),
    Column("requeues", INT, 0),
    Column("children", INT, 0),
    Column("created_at", REAL, 0.0),
    Column("updated_at", REAL, 0.0),
    # Failure handling (docs/failures.md): 0 takes the farm's [server] value, -1 turns it off.
    Column("stalltimeout", INT, 0, settable=True, edit="plain", pick=True),
    Column("minruntime", INT, 0, settable=True, edit="plain"),
    Column("hostfails", INT, 0, settable=True, edit="plain"),
    Column("logrules", TEXT, "", settable=True, edit="plain"),
    Column("reason", NAME, ""),  # why the last run ended (the run's event says it too)
    # Studio scheduling (docs/scheduling.md): farm-wide limits the job holds while it runs
    # ("arnold:2,nuke:1"), the frames it covers (last < first: none known), and the job it
    # waits for frame by frame (its units wait for the overlapping units of that job).
    Column("limits", TEXT, "", settable=True, edit="plain"),
    Column("first_frame", BIG, 0, settable=True, edit="plain"),
    Column("last_frame", BIG, -1, settable=True, edit="plain"),
    Column("frame_dep", BIG, 0, settable=True, edit="frame_dep"),
    # Resource requests (docs/scheduling.md): 0 is no request; children inherit what they
    # leave at 0. The worker gets the effective request with the job (`need`).
    Column("cores", INT, 0, settable=True, edit="plain"),
    Column("memory", BIG, 0, settable=True, edit="plain"),  # MB
    Column("gpus", INT, 0, settable=True, edit="plain"),
    Column("exclusive", SMALL, 0, settable=True, edit="plain"),
    # An Open Job Description task (docs/openjd.md): its OpenJD job (the top group, whose
    # template is in `openjd_jobs`), step and task parameter values, as JSON; "" otherwise.
    # Set by POST /api/openjd only: the worker runs the step's script with these values.
    Column("openjd", TEXT, "", pick=True),
    # Internal: dispatch and tree upkeep.
    Column("child_fail_count", INT, 0, api=False),
    Column("pending", SMALL, 0, api=False),
    Column("leaf", SMALL, 1, api=False),
    Column("h_blocked", SMALL, 0, api=False),
    Column("h_key", KEY, "", api=False),
    Column("h_depth", INT, 0, api=False),
    Column("tagset", INT, 0, api=False),
    Column("run_event", BIG, 0, api=False),
    Column("has_dependents", SMALL, 0, api=False),
    Column("log_offset", BIG, 0, api=False),
    Column("rule_hit", NAME, "", api=False),  # the log rule that decided the current run
    # What the running job holds of the farm's limits (released when it stops running, so an
    # edit of `limits` during a run cannot unbalance the counters).
    Column("limits_held", TEXT, "", api=False),
)

WORKERS: tuple[Column, ...] = (
    Column("name", "VARCHAR(255) NOT NULL PRIMARY KEY", None),
    Column("ip", "VARCHAR(64) NOT NULL DEFAULT {default}", ""),
    Column("affinity", TEXT, ""),
    Column("state", STATE, "WAITING"),
    Column("ping_time", REAL, 0.0),
    Column("finished", INT, 0),
    Column("error", INT, 0),
    Column("last_job", BIG, 0),
    Column("current_job", BIG, 0),
    Column("current_event", BIG, 0),
    Column("cpu", TEXT, "[]"),
    Column("free_memory", BIG, 0),
    Column("total_memory", BIG, 0),
    Column("active", SMALL, 1),
    Column("start_time", REAL, 0.0),
    Column("reason", NAME, ""),  # why the worker is SICK
    # What the worker's host offers to jobs (detected or set in [worker]) and what its
    # running jobs hold: the same on every slot of one host (docs/scheduling.md).
    Column("cores", INT, 0),
    Column("memory", BIG, 0),  # MB
    Column("gpus", INT, 0),
    Column("used_cores", INT, 0),
    Column("used_memory", BIG, 0),
    Column("used_gpus", INT, 0),
    # The worker process's own name: the slots of one host share it, and failures (blocks,
    # SICK) are counted per host (docs/failures.md). "": the slot is its own host.
    Column("host", NAME, ""),
    # Tags the worker itself offers on every rule line, its affinity edited or not: what it
    # can run and what it is (`openjd,linux,x86_64` where it runs OpenJD tasks, docs/openjd.md).
    Column("offers", NAME, ""),
    Column("affinity_set", SMALL, 0, api=False),
    Column("blocked_until", REAL, 0.0, api=False),  # the end of its last job block (pick skips)
)

JOB_COLUMNS = tuple(c.name for c in JOBS)
WORKER_COLUMNS = tuple(c.name for c in WORKERS)
JOB_FIELDS = tuple(c.name for c in JOBS if c.api)  # the documented job object
WORKER_FIELDS = tuple(c.name for c in WORKERS if c.api)
JOB_SETTABLE = tuple(c.name for c in JOBS if c.settable)
JOB_PLAIN_EDITS = tuple(c.name for c in JOBS if c.edit == "plain")
JOB_PICK = tuple(c.name for c in JOBS if c.pick)


def new_job_row() -> dict[str, Any]:
    """Every job column but the id, at its default."""
    return {c.name: c.default for c in JOBS if c.default is not None}


def new_worker_row(name: str) -> dict[str, Any]:
    """A worker row at its defaults."""
    return {"name": name, **{c.name: c.default for c in WORKERS if c.default is not None}}
