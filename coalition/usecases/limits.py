"""Farm-wide limits (licences, shared resources) and why a waiting job does not run.

A limit is a named counter with a capacity (`[limits]` in coalition.ini, or the API). A job
that needs `nuke:1` is picked only while `in_use + external + 1 <= capacity`; the pick takes
the amount in its own transaction (a compare-and-set on the limit's row, see
store/sqlsched.py) and the tree gives it back when the run stops running
(hierarchy.Tree.set_leaf_state). `external` is what the limit's command (ini only: the API
cannot make the server run a command) last counted in use outside the farm.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import scheduling
from ..audit import NOBODY, Actor, record_audit
from ..errors import NotFound
from ..hierarchy import Tree
from ..model import FINISHED, PENDING, WAITING, WORKING, ValidationError
from ..store.base import Row, Tx
from .context import Context, Effects
from .resources import resource_reasons


@dataclass(frozen=True)
class LimitConfig:
    """One `[limits]` entry: a capacity, and maybe a command that counts outside use."""

    name: str
    capacity: int
    command: str = ""


def check_limits_exist(tx: Tx, text: str) -> None:
    """Refuse a job that needs a limit the farm does not have (400 naming the field)."""
    for name in scheduling.limit_amounts(text):
        if tx.limit(name) is None:
            known = ", ".join(r["name"] for r in tx.limits()) or "none"
            raise ValidationError(f"limits: unknown limit {name!r} (known: {known})")


def acquire(tx: Tx, text: str, now: float) -> str:
    """Take every limit a job needs, or none: returns "" when taken, else the name of the
    first limit without room (what was taken before it is given back, in this transaction)."""
    taken: list[tuple[str, int]] = []
    for name, amount in scheduling.limit_amounts(text).items():
        if not tx.acquire_limit(name, amount, now):
            for done, n in taken:
                tx.release_limit(done, n)
            return name
        taken.append((name, amount))
    return ""


def release_held(tx: Tx, text: str) -> None:
    """Give back what a run held."""
    for name, amount in scheduling.limit_amounts(text).items():
        tx.release_limit(name, amount)


def run_count_command(command: str, timeout: float = 20.0) -> int | None:
    """Run a limit's command; its output's first integer is the count in use (None: the
    command failed, and the last count is kept)."""
    try:
        done = subprocess.run(
            command, shell=True, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    for word in done.stdout.split():
        if word.isdigit():
            return int(word)
    return None


def lowered(row: Row, now: float) -> int:
    """Licences of a limit a log rule found missing, still counted as used at `now`."""
    return int(row["lowered"]) if float(row["lowered_until"]) > now else 0


def lower(tx: Tx, name: str, now: float, seconds: int) -> bool:
    """A log rule `limit:NAME[:SECONDS]` fired: one licence of NAME counts as used outside
    the farm for SECONDS (an hour by default); False if the farm has no such limit."""
    return bool(tx.lower_limit(name, now, now + (seconds or 3600)))


def _view(row: Row, now: float) -> dict[str, Any]:
    outside = int(row["external"]) + lowered(row, now)
    return {
        "name": row["name"],
        "capacity": int(row["capacity"]),
        "in_use": int(row["in_use"]),
        "external": int(row["external"]),
        "lowered": lowered(row, now),
        "free": max(0, int(row["capacity"]) - int(row["in_use"]) - outside),
    }


class Limits:
    """Reading and editing the farm's limits; refreshing their outside counts."""

    def __init__(self, ctx: Context, configured: Sequence[LimitConfig] = ()):
        self.ctx = ctx
        self.configured = {c.name: c for c in configured}

    def all(self) -> list[dict[str, Any]]:
        """Every limit with its use, and whether a command counts its outside use."""
        rows = self.ctx.read(lambda tx: tx.limits())
        now = self.ctx.clock()
        out = []
        for row in rows:
            item = _view(row, now)
            item["counted_by_command"] = bool(self.configured.get(row["name"], LimitConfig("", 0)).command)
            out.append(item)
        return out

    def seed(self) -> None:
        """Create the ini's limits that the database lacks (an edit made through the API is
        kept across restarts; the ini gives the first value)."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            for c in self.configured.values():
                tx.put_limit(c.name, c.capacity, now, create_only=True)

        if self.configured:
            self.ctx.write(fn)

    def set(self, values: Mapping[str, int], actor: Actor = NOBODY) -> list[dict[str, Any]]:
        """Create limits or set their capacities: {name: capacity}."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            for name, capacity in values.items():
                tx.put_limit(name, capacity, now)
            record_audit(tx, actor, "limits", "", sorted(values), now, dict(values))

        self.ctx.write(fn)
        return [item for item in self.all() if item["name"] in values]

    def delete(self, name: str, actor: Actor = NOBODY) -> None:
        """Remove a limit (jobs that need it wait until it exists again)."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            if not tx.delete_limit(name):
                raise NotFound(f"limit {name!r} not found")
            record_audit(tx, actor, "limits", "", [name], now, {"deleted": name})

        self.ctx.write(fn)

    def refresh(self, run: Callable[[str], int | None] = run_count_command) -> dict[str, int]:
        """Run every limit's command (outside any transaction) and record what it counted:
        the licences in use as the licence server sees them, less what the farm's own runs
        hold, is what is in use outside the farm."""
        counted = {}
        for c in self.configured.values():
            if c.command:
                value = run(c.command)
                if value is not None:
                    counted[c.name] = value
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> dict[str, int]:
            out = {}
            for name, total in counted.items():
                row = tx.limit(name)
                if row is not None:
                    out[name] = max(0, total - int(row["in_use"]))
                    tx.set_limit_external(name, out[name], now)
            return out

        return self.ctx.write(fn) if counted else {}

    # -- why a job does not run -------------------------------------------------------------
    def why(self, job_id: int) -> dict[str, Any]:
        """Why a job is not running: its state, and the reasons found (limits without room,
        frames of another job not finished, dependencies, pause)."""

        def fn(tx: Tx) -> dict[str, Any]:
            row = tx.job(job_id)
            if row is None:
                raise NotFound(f"job {job_id} not found")
            return {"id": job_id, "state": row["state"], "reasons": self._reasons(tx, row)}

        return self.ctx.read(fn)

    def _reasons(self, tx: Tx, row: Row) -> list[dict[str, Any]]:
        reasons: list[dict[str, Any]] = []
        if row["state"] in (WORKING, FINISHED):
            return reasons
        if row["paused"]:
            reasons.append({"kind": "paused", "text": "the job is paused"})
        for dep in tx.deps(row["id"]):
            drow = tx.job(dep)
            if drow is not None and drow["state"] != FINISHED:
                reasons.append(
                    {"kind": "dependency", "job": dep, "text": f"dependency job {dep} is {drow['state']}"}
                )
        tree = Tree(tx, self.ctx.clock(), self.ctx.tags.view(tx))  # read-only use: frame lookups
        if not row["children"]:
            blocker = tree.frame_blocker(row)
            if blocker is not None:
                source = tree.frame_source(row)
                span = scheduling.frame_span(blocker["first_frame"], blocker["last_frame"])
                mine = scheduling.frame_span(row["first_frame"], row["last_frame"])
                frame = max(span[0], mine[0]) if span and mine else (span or mine or (None,))[0]
                what = f"frame {frame} of job {source}" if frame is not None else f"job {source}"
                reasons.append(
                    {
                        "kind": "frame_dependency",
                        "job": source,
                        "unit": blocker["id"],
                        "frame": frame,
                        "text": f"dependency {what} (job {blocker['id']}) is {blocker['state']}",
                    }
                )
        if row["state"] in (WAITING, PENDING) and row["limits"]:
            for name, amount in scheduling.limit_amounts(row["limits"]).items():
                lim = tx.limit(name)
                if lim is None:
                    reasons.append({"kind": "limit", "limit": name, "text": f"limit {name} does not exist"})
                    continue
                outside = int(lim["external"]) + lowered(lim, self.ctx.clock())
                used = int(lim["in_use"]) + outside
                if not scheduling.limit_room(int(lim["capacity"]), int(lim["in_use"]), outside, amount):
                    reasons.append(
                        {
                            "kind": "limit",
                            "limit": name,
                            "in_use": used,
                            "capacity": int(lim["capacity"]),
                            "text": f"waiting for limit {name} ({used}/{lim['capacity']} in use, "
                            f"needs {amount})",
                        }
                    )
        if row["state"] in (WAITING, PENDING) and not row["children"]:
            need = tree.tags.shape(row["tagset"]).need
            reasons.extend(resource_reasons(tx, need, self.ctx.clock(), self.ctx.settings.worker_timeout))
        if row["state"] == WAITING and not reasons and row["h_blocked"]:
            reasons.append({"kind": "group", "text": "a group above it is paused or waits for a dependency"})
        return reasons
