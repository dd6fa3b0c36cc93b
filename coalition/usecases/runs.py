"""Run transitions several actors share: a running leaf taken away from its worker (pause,
reset, delete, a worker stopped, deleted, terminated or lost), inside the caller's
transaction. The log note is an effect, appended once after the commit.
"""

from __future__ import annotations

from ..hierarchy import Tree
from ..model import PENDING, W_WAITING, WAITING, WORKING
from ..store.base import Row, Tx
from .context import Effects

# What an aborted run's event says (its state is the short form).
_REASONS = {
    "LOST": "lost worker (it asked for work while it was running this job)",
    "PAUSED": "paused by an operator",
    "RESET": "reset by an operator",
    "DELETED": "deleted (the job or its worker)",
    "STOPPED": "worker stopped by an operator",
}


def abort_run(tx: Tx, tree: Tree, fx: Effects, leaf: Row, reason: str, now: float) -> None:
    """Stop counting a running leaf as running: close its event, free its worker, put it
    back to WAITING/PENDING. The worker learns at its next heartbeat and kills the job."""
    why = _REASONS.get(reason, reason.lower())
    if leaf["run_event"]:
        tx.update_event(
            leaf["run_event"],
            {"state": reason, "duration": max(0.0, now - leaf["start_time"]), "reason": why},
        )
    worker = tx.worker(leaf["worker"]) if leaf["worker"] else None
    if worker is not None and worker["current_job"] == leaf["id"]:
        tx.update_worker(worker["name"], {"current_job": 0, "state": W_WAITING})
    fx.append_log(
        leaf["id"], f"\n[coalition] {reason.lower()}: the server told the worker to kill the job\n".encode()
    )
    target = PENDING if leaf["pending"] else WAITING
    tree.set_leaf_state(
        leaf, target, {"run_event": 0, "duration": max(0.0, now - leaf["start_time"]), "reason": why}
    )


def release_worker_job(tx: Tx, tree: Tree, fx: Effects, worker: Row, reason: str, now: float) -> None:
    """Give a worker's current job back to the queue and mark the worker free."""
    job_id = worker["current_job"]
    if not job_id:
        return
    job = tx.job(job_id)
    if job is not None and job["state"] == WORKING and job["worker"] == worker["name"]:
        abort_run(tx, tree, fx, job, reason, now)
    tx.update_worker(worker["name"], {"current_job": 0, "state": W_WAITING})
