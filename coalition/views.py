"""Rows as the API shows them: the documented job, worker and event objects. No I/O."""

from __future__ import annotations

import json
import math
from typing import Any

from .columns import JOB_FIELDS, WORKER_FIELDS
from .model import PAUSED, WORKING
from .store.base import Row

_INT_TIMES = ("start_time", "ping_time")


def job_view(row: Row, now: float, dependencies: list[int] | None = None) -> dict[str, Any]:
    """The documented job object (plus `dependencies` on a single job)."""
    out = {key: row.get(key) for key in JOB_FIELDS}
    out["paused"] = int(row["paused"])
    if row["paused"]:
        out["state"] = PAUSED
    for key in _INT_TIMES:
        out[key] = int(row[key] or 0)
    duration = row["duration"] or 0.0
    if row["state"] == WORKING and not row["children"] and row["start_time"]:
        duration = max(0.0, now - row["start_time"])  # live for a running leaf
    out["duration"] = round(duration, 3)
    if row["children"]:  # a group's progress is derived, never stored
        total = row["total"] or 0
        out["progress"] = round(row["total_finished"] / total, 6) if total else 0.0
    else:
        out["progress"] = round(row["progress"] or 0.0, 6)
    out["local_progress"] = round(row["local_progress"] or 0.0, 6)
    out["created_at"] = round(row["created_at"] or 0.0, 3)
    out["updated_at"] = round(row["updated_at"] or 0.0, 6)
    if dependencies is not None:
        out["dependencies"] = dependencies
    return out


def worker_view(row: Row) -> dict[str, Any]:
    """The documented worker object; `cpu` stays a JSON-list string as in Coalition 4."""
    out = {key: row[key] for key in WORKER_FIELDS}
    out.update(
        ping_time=int(row["ping_time"] or 0),
        cpu=row["cpu"] or "[]",
        active=int(row["active"]),
        start_time=int(row["start_time"] or 0),
    )
    return out


def event_view(row: Row, now: float) -> dict[str, Any]:
    """The documented event object; an open run shows its live duration."""
    duration = row["duration"] or 0.0
    if row["state"] == WORKING:
        duration = max(0.0, now - row["start"])
    return {
        "id": row["id"],
        "worker": row["worker"],
        "job_id": row["job_id"],
        "job_title": row["job_title"],
        "state": row["state"],
        "start": int(row["start"] or 0),
        "duration": round(duration, 3),
        # New in Coalition 5: what the run used, as its worker measured it (0: not known).
        "cpu_time": round(float(row.get("cpu_time") or 0.0), 3),
        "peak_memory": int(row.get("peak_memory") or 0),
        "reason": row.get("reason") or "",
    }


def cpu_text(cpu: Any) -> str:
    """Per-core CPU figures as the JSON-list string the API serves."""
    if isinstance(cpu, str):
        try:
            cpu = json.loads(cpu)
        except ValueError:
            return "[]"
    if not isinstance(cpu, (list, tuple)):
        return "[]"
    values = []
    for v in cpu[:1024]:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                number = float(v)
            except OverflowError:  # an int past 1e308 from Coalition 4's `load` field
                continue
            if math.isfinite(number):  # json.dumps would write NaN/Infinity: not JSON
                values.append(round(number, 1))
    return json.dumps(values)
