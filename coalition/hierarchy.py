"""Keeping the job tree consistent inside one transaction.

A job's derived fields (ordering key, blocked flag, effective tag set) come from its ancestor
chain; a group's counters and state come from its children. This module holds the few
operations that maintain both — a leaf changing state, a subtree re-derived after an edit, a
group recounted after a structural change — and the dependency releases they trigger. It
works on the store's `Tx` interface only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import scheduling
from .model import ERROR, FINISHED, PENDING, WAITING, WORKING, ValidationError, parse_tags
from .scheduling import ROOT, Derived, Need, Shape
from .store.base import Row, Tx

_COUNTED = ((FINISHED, "finished"), (ERROR, "errors"), (WORKING, "working"))
_DERIVE_COLS = (
    "id",
    "parent",
    "priority",
    "affinity",
    "paused",
    "pending",
    "children",
    "h_key",
    "h_depth",
    "h_blocked",
    "tagset",
    "cores",
    "memory",
    "gpus",
    "exclusive",
)


def own_need(row: Row) -> Need:
    """A job row's own resource request (its columns; absent ones count as no request)."""
    return Need(
        cores=int(row.get("cores") or 0),
        memory=int(row.get("memory") or 0),
        gpus=int(row.get("gpus") or 0),
        exclusive=bool(row.get("exclusive")),
    )


class TagLookup(Protocol):
    """The tag sets a transaction sees (usecases.tagcache.TagView)."""

    def tags(self, tagset_id: int) -> frozenset[str]:
        """The tags of a tag-set id."""
        ...

    def shape(self, tagset_id: int) -> Shape:
        """The tags and request of a tag-set id."""
        ...

    def created(self, tagset_id: int, shape: Shape) -> None:
        """Note a tag set found or created by this transaction."""
        ...

    def current(self) -> tuple[Mapping[int, Shape], int | None]:
        """Every tag set, and the cache generation it belongs to (None: not cacheable)."""
        ...


@dataclass
class Transition:
    """A job whose state changed during a transaction (for notifications)."""

    job_id: int
    parent: int
    old: str
    new: str


@dataclass
class Tree:
    """Tree maintenance bound to one transaction and one instant."""

    tx: Tx
    now: float
    tags: TagLookup
    decrease_priority_after: int = 0
    # Sees each transition as it happens, inside the transaction (e-mail is queued there).
    on_transition: Callable[[Transition], Any] | None = None
    transitions: list[Transition] = field(default_factory=list)
    _tagset_ids: dict[str, int] = field(default_factory=dict)

    # -- derived fields ---------------------------------------------------------------------
    def derived_of(self, row: Row) -> Derived:
        """The stored derived fields of a job row."""
        shape = self.tags.shape(row["tagset"])
        return Derived(row["h_key"], row["h_depth"], bool(row["h_blocked"]), shape.tags, shape.need)

    def parent_derived(self, parent_id: int) -> Derived:
        """What children of `parent_id` inherit (the root for 0)."""
        if not parent_id:
            return ROOT
        row = self.tx.job(parent_id)
        return ROOT if row is None else self.derived_of(row)

    def tagset_id(self, tags: frozenset[str], need: Need = scheduling.BARE) -> int:
        """The id of an effective tag set and request, created in this transaction if new."""
        text = scheduling.tagset_text(tags, need)
        if len(text) > 500 and (need.bare or len(text) > 512):  # tagsets.tags is a VARCHAR(512)
            raise ValidationError("affinity: too many or too long tags (500 characters at most in all)")
        found = self._tagset_ids.get(text)
        if found is None:
            found = self.tx.tagset_id(text)
            self._tagset_ids[text] = found
            self.tags.created(found, Shape(tags, need))
        return found

    def derive_row(self, parent: Derived, row: Row) -> tuple[Derived, dict[str, Any]]:
        """Derived fields of `row` under `parent`, and the columns that differ from stored."""
        d = scheduling.derive(
            parent,
            row["id"],
            row["priority"],
            parse_tags(row["affinity"]),
            bool(row["paused"]),
            bool(row["pending"]),
            own_need(row),
        )
        if d.h_depth >= scheduling.MAX_DEPTH:
            raise ValidationError(f"the hierarchy would be deeper than {scheduling.MAX_DEPTH} levels")
        fields: dict[str, Any] = {}
        tagset = self.tagset_id(d.tags, d.need)
        if row.get("h_key") != d.h_key:
            fields["h_key"] = d.h_key
        if row.get("h_depth") != d.h_depth:
            fields["h_depth"] = d.h_depth
        if bool(row.get("h_blocked")) != d.h_blocked:
            fields["h_blocked"] = int(d.h_blocked)
        if row.get("tagset") != tagset:
            fields["tagset"] = tagset
        return d, fields

    def rederive(self, root_id: int) -> None:
        """Recompute the derived fields of a job and its whole subtree."""
        root = self.tx.job(root_id)
        if root is None:
            return
        stack: list[tuple[Row, Derived]] = [(root, self.parent_derived(root["parent"]))]
        updates: list[tuple[int, dict[str, Any]]] = []
        while stack:
            row, parent = stack.pop()
            d, fields = self.derive_row(parent, row)
            if fields:
                fields["updated_at"] = self.now
                updates.append((row["id"], fields))
            if row["children"]:
                stack.extend((child, d) for child in self.tx.children(row["id"], _DERIVE_COLS))
        self.tx.update_jobs(updates)

    # -- leaf state -------------------------------------------------------------------------
    def set_leaf_state(
        self,
        row: Row,
        new_state: str,
        fields: dict[str, Any] | None = None,
        duration_delta: float = 0.0,
        written: bool = False,
    ) -> None:
        """Change a leaf's state (and other columns), keeping ancestors and dependents right.
        With `written`, the row itself was already updated (by a claim): only propagate."""
        old = row["state"]
        values = dict(fields or {})
        values["state"] = new_state
        values["updated_at"] = self.now
        if old == WORKING and new_state != WORKING:
            self._release_limits(row, values)
        if not written:
            self.tx.update_job(row["id"], values)
        row.update(values)
        if old != new_state or duration_delta:
            self._propagate(row["parent"], old, new_state, duration_delta)
        if old != new_state:
            self._transition(Transition(row["id"], row["parent"], old, new_state))
            self._after_state_change(row["id"], old, new_state, row.get("has_dependents", 1))
            if row.get("has_dependents", 1) and FINISHED in (old, new_state):
                self.frame_release(row, new_state == FINISHED)

    # -- farm-wide limits -------------------------------------------------------------------
    def _release_limits(self, row: Row, values: dict[str, Any]) -> None:
        """A run ends (or is taken back): give back what it held of the farm's limits."""
        held = row.get("limits_held")
        if held is None:
            stored = self.tx.job(row["id"])
            held = stored["limits_held"] if stored is not None else ""
        if held:
            for name, amount in scheduling.limit_amounts(held).items():
                self.tx.release_limit(name, amount)
            values["limits_held"] = ""

    # -- frame-to-frame dependencies --------------------------------------------------------
    def frame_source(self, row: Row) -> int:
        """The job whose frames this leaf waits for: its own `frame_dep`, else its group's."""
        if row.get("frame_dep"):
            return int(row["frame_dep"])
        if row.get("parent"):
            prow = self.tx.job(row["parent"])
            if prow is not None and prow["frame_dep"]:
                return int(prow["frame_dep"])
        return 0

    def frame_blocker(self, row: Row) -> Row | None:
        """The first unit of the frame source not finished that covers a frame of this leaf
        (a chunk waits for every frame it covers), or None when its frames are all done."""
        source = self.frame_source(row)
        if not source:
            return None
        src = self.tx.job(source)
        if src is None:
            return None  # the source was deleted: nothing to wait for any more
        span = scheduling.frame_span(row["first_frame"], row["last_frame"])
        if not src["children"]:
            own = scheduling.frame_span(src["first_frame"], src["last_frame"])
            ok = src["state"] == FINISHED or not scheduling.frames_overlap(span, own)
            return None if ok else src
        left = self.tx.unfinished_frame_units(source, span)
        return left[0] if left else None

    def frame_release(self, row: Row, finished: bool) -> None:
        """A unit finished (or was reset from FINISHED): the overlapping units of the jobs
        that wait for it (or for its group) frame by frame may start (or wait again)."""
        if "first_frame" not in row or "frame_dep" not in row:
            full = self.tx.job(row["id"])
            if full is None:
                return
            row = {**full, **row}
        span = scheduling.frame_span(row["first_frame"], row["last_frame"])
        for source in (row["id"], row["parent"]):
            if not source:
                continue
            for waiter in self.tx.frame_dependents(source):
                wrow = self.tx.job(waiter)
                if wrow is None:
                    continue
                if wrow["children"]:
                    units = self.tx.frame_units(waiter, span)
                else:
                    own = scheduling.frame_span(wrow["first_frame"], wrow["last_frame"])
                    units = [wrow] if scheduling.frames_overlap(span, own) else []
                for unit in units:
                    if unit["children"]:
                        continue
                    if finished and unit["pending"]:
                        if self.tx.unfinished_deps(unit["id"]) == 0 and self.frame_blocker(unit) is None:
                            self.set_pending(unit["id"], False)
                    elif not finished and not unit["pending"] and unit["state"] == WAITING:
                        self.set_pending(unit["id"], True)

    def _transition(self, t: Transition) -> None:
        self.transitions.append(t)
        if self.on_transition is not None:
            self.on_transition(t)

    def _propagate(self, parent_id: int, old: str, new: str, duration_delta: float = 0.0) -> None:
        direct: dict[str, int | float] = {col: int(new == st) - int(old == st) for st, col in _COUNTED}
        totals: dict[str, int | float] = {f"total_{col}": v for col, v in direct.items()}
        if duration_delta:
            totals["duration"] = duration_delta  # a group's duration sums its runs, at every level
        self.bump_chain(parent_id, direct, totals)

    def bump_chain(
        self, parent_id: int, direct: dict[str, int | float], totals: dict[str, int | float]
    ) -> None:
        """Add to the direct parent's counters and every ancestor's totals, then refresh
        the group states up the chain (a new child can unfinish a finished group)."""
        first = True
        pid = parent_id
        while pid:
            deltas = {**totals, **direct} if first else totals
            prow = self.tx.bump_job(pid, deltas, self.now, returning=True)
            if prow is None:
                return
            self._refresh_group_state(prow)
            pid = prow["parent"]
            first = False

    def _refresh_group_state(self, prow: Row) -> None:
        if not prow["children"]:
            return
        total = prow["total"]
        new = scheduling.group_state(
            total, prow["total_finished"], prow["total_errors"], prow["total_working"], bool(prow["pending"])
        )
        fields: dict[str, Any] = {}
        old = prow["state"]
        if new != old:
            fields["state"] = new
        # A group's progress is not stored: views derive it from the counters, which spares
        # the hot path one write per finished frame.
        if new == WORKING and not prow["start_time"]:
            fields["start_time"] = self.now
        if fields:
            fields["updated_at"] = self.now
            self.tx.update_job(prow["id"], fields)
            prow.update(fields)
        if new != old:
            self._transition(Transition(prow["id"], prow["parent"], old, new))
            self._after_state_change(prow["id"], old, new, prow.get("has_dependents", 1))

    def _after_state_change(self, job_id: int, old: str, new: str, has_dependents: int = 1) -> None:
        if not has_dependents:
            return
        if new == FINISHED:
            for dep in self.tx.dependents(job_id):
                if self.tx.unfinished_deps(dep) == 0:
                    self.set_pending(dep, False)
        elif old == FINISHED:
            for dep in self.tx.dependents(job_id):
                self.set_pending(dep, True)

    def set_pending(self, job_id: int, pending: bool) -> None:
        """A job's dependencies became met (False) or unmet again (True)."""
        row = self.tx.job(job_id)
        if row is None or bool(row["pending"]) == pending:
            return
        if not pending and not row["children"] and self.frame_blocker(row) is not None:
            return  # its own dependencies are met, but not yet the frames it waits for
        if row["children"]:
            self.tx.update_job(job_id, {"pending": int(pending), "updated_at": self.now})
            row["pending"] = int(pending)
            self.rederive(job_id)
            self._refresh_group_state(row)
            return
        fields: dict[str, Any] = {"pending": int(pending)}
        _, derived = self.derive_row(self.parent_derived(row["parent"]), {**row, "pending": int(pending)})
        fields.update(derived)
        if pending and row["state"] == WAITING:
            self.set_leaf_state(row, PENDING, fields)
        elif not pending and row["state"] == PENDING:
            self.set_leaf_state(row, WAITING, fields)
        else:  # running or done: it already ran, only remember the flag
            fields["updated_at"] = self.now
            self.tx.update_job(job_id, fields)

    # -- structure --------------------------------------------------------------------------
    def recount(self, group_id: int, up: bool = True) -> None:
        """Recompute a job's counters from its direct children, then (with `up`) every
        ancestor's up to the root."""
        pid = group_id
        while pid:
            row = self.tx.job(pid)
            if row is None:
                return
            kids = self.tx.children(
                pid,
                (
                    "children",
                    "state",
                    "total",
                    "total_finished",
                    "total_errors",
                    "total_working",
                    "duration",
                    "start_time",
                ),
            )
            c: dict[str, Any] = dict.fromkeys(
                ("finished", "errors", "working", "total", "total_finished", "total_errors", "total_working"),
                0,
            )
            duration = 0.0
            starts = []
            for k in kids:
                duration += k["duration"] or 0.0
                if k["start_time"]:
                    starts.append(k["start_time"])
                if k["children"]:
                    for col in ("total", "total_finished", "total_errors", "total_working"):
                        c[col] += k[col]
                else:
                    c["total"] += 1
                    for st, col in _COUNTED:
                        if k["state"] == st:
                            c[col] += 1
                            c[f"total_{col}"] += 1
            fields: dict[str, Any] = {key: v for key, v in c.items() if row[key] != v}
            if row["children"] != len(kids):
                fields["children"] = len(kids)
            if kids:
                if row["leaf"]:
                    fields["leaf"] = 0
                if abs((row["duration"] or 0.0) - duration) > 1e-9:
                    fields["duration"] = duration
                start = min(starts) if starts else 0.0
                if row["start_time"] != start:
                    fields["start_time"] = start
            elif row["children"]:
                # The last child went away: the job is a plain job again.
                fields.update(
                    leaf=int(row["command"] != ""),
                    progress=0.0,
                    duration=0.0,
                    start_time=0.0,
                    state=PENDING if row["pending"] else WAITING,
                )
            if fields:
                fields["updated_at"] = self.now
                self.tx.update_job(pid, fields)
                row.update(fields)
            if kids:
                self._refresh_group_state(row)
            pid = row["parent"] if up else 0

    def subtree(self, root_id: int, columns: tuple[str, ...] = ()) -> list[Row]:
        """The job and all its descendants (root first), with the given columns (or all)."""
        root = self.tx.job(root_id)
        if root is None:
            return []
        out = [root]
        queue = [root]
        cols = tuple(columns) + ("id", "children") if columns else None
        while queue:
            row = queue.pop()
            if row["children"]:
                kids = self.tx.children(row["id"], cols)
                out.extend(kids)
                queue.extend(kids)
        return out

    def ancestors(self, job_id: int) -> list[int]:
        """Ids of the ancestors of a job, nearest first."""
        out: list[int] = []
        row = self.tx.job(job_id)
        seen = set()
        while row is not None and row["parent"] and row["parent"] not in seen:
            out.append(row["parent"])
            seen.add(row["parent"])
            row = self.tx.job(row["parent"])
        return out

    def child_failed(self, parent_id: int) -> None:
        """Count a child's failed run on its parent; `decreasepriorityafter` may lower the
        parent's priority (and so re-key its subtree)."""
        if not parent_id:
            return
        self.tx.bump_job(parent_id, {"child_fail_count": 1}, self.now)
        if self.decrease_priority_after <= 0:
            return
        prow = self.tx.job(parent_id)
        if prow is None:
            return
        new = scheduling.new_priority_after_child_error(
            prow["priority"], prow["child_fail_count"], self.decrease_priority_after
        )
        if new != prow["priority"]:
            self.tx.update_job(parent_id, {"priority": new, "updated_at": self.now})
            self.rederive(parent_id)
