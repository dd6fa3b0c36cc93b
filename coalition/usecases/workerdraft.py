"""A worker row as one request sees it: read once, changed in memory, written once.

Kept apart from workers.py because the pick (pick.py) and a run's end (runend.py) change the
same draft as the protocol does, inside the same transaction, and write nothing of the worker
row themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import columns
from ..store.base import Row, Tx


class WorkerDraft:
    """A worker row read once per request; its changes are written once, by flush(). A new
    row (`new`) is inserted by flush() too: a sync drops the draft of a new slot that asked
    for a job and got none, so a packing host's spare slots never clutter the workers list."""

    def __init__(self, row: Row, new: bool = False):
        self.row = row
        self.new = new
        self.fields: dict[str, Any] = {}
        self.deltas: dict[str, int] = {}

    def __getitem__(self, key: str) -> Any:
        return self.row[key]

    def set(self, **fields: Any) -> None:
        """Change columns (in memory until flush)."""
        self.fields.update(fields)
        self.row.update(fields)

    def bump(self, column: str, delta: int) -> None:
        """Add to a counter atomically at flush (another server may count too)."""
        self.deltas[column] = self.deltas.get(column, 0) + delta
        self.row[column] = (self.row.get(column) or 0) + delta

    @staticmethod
    def flush_all(tx: Tx, drafts: Sequence[WorkerDraft]) -> None:
        """Write what changed of several drafts: those that changed the same columns to the
        same values (the slots of one host telling its ping time, CPU and memory) in one
        statement, the others one by one."""
        same: dict[tuple[tuple[str, Any], ...], list[str]] = {}
        for draft in drafts:
            if draft.new or draft.deltas or not draft.fields:
                draft.flush(tx)
                continue
            key = tuple(draft.fields.items())
            try:
                same.setdefault(key, []).append(draft.row["name"])
            except TypeError:  # an unhashable value: written on its own
                draft.flush(tx)
                continue
            draft.fields = {}
        for key, names in same.items():
            tx.update_workers(names, dict(key))

    def flush(self, tx: Tx) -> None:
        """Write what changed, in one statement (two for a new row)."""
        if self.new:
            tx.insert_worker({k: v for k, v in self.row.items() if k in columns.WORKER_COLUMNS})
            self.new = False  # (another server may have inserted it: the update still applies)
        if self.fields or self.deltas:
            tx.update_worker(self.row["name"], self.fields, self.deltas)
            self.fields, self.deltas = {}, {}
