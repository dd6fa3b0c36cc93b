"""Frame-to-frame dependencies on the operator's side: checking a `frame_dep`, setting it,
and recomputing which units wait for frames after an edit (the releases themselves are tree
upkeep: hierarchy.Tree.frame_release). Functions over the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..hierarchy import Tree
from ..model import PENDING, WAITING, ValidationError
from ..store.base import Row, Tx

# jobdeps.deadlock: would `job` waiting for `deps` close a wait cycle? (dep, culprit) or None.
Deadlock = Callable[[Tx, Tree, int, Iterable[int]], "tuple[int, int] | None"]


def check_frame_dep(tx: Tx, tree: Tree, job_id: int, parent_id: int, target: int, deadlock: Deadlock) -> None:
    """Refuse a frame dependency on a missing job, on the job itself, its own group or child,
    or one that closes a wait cycle (the target already waits for this job). `job_id` 0: a
    job being created."""
    if target == job_id:
        raise ValidationError(f"frame_dep: job {job_id} cannot depend on itself")
    if tx.job(target) is None:
        raise ValidationError(f"frame_dep: job {target} does not exist")
    chain = {parent_id, *tree.ancestors(parent_id)} - {0} if parent_id else set()
    if target in chain:
        raise ValidationError(f"frame_dep: a job cannot depend frame by frame on its own group ({target})")
    if not job_id:
        return  # a new job: nothing waits for it yet, so no cycle can close
    if job_id in tree.ancestors(target):
        raise ValidationError(
            f"frame_dep: job {job_id} cannot depend frame by frame on its own child {target}"
        )
    # What the target waits for (dependencies, frame dependencies, groups): reaching this job
    # or its subtree means a cycle.
    cycle = deadlock(tx, tree, job_id, [target])
    if cycle is not None:
        raise ValidationError(
            f"frame_dep: job {job_id} cannot depend on job {target}: "
            f"job {target} already waits for job {cycle[1]} (a cycle)"
        )


def set_frame_dep(tx: Tx, tree: Tree, row: Row, target: int, deadlock: Deadlock) -> None:
    """Make a job wait for `target` frame by frame (0: for nothing), then recompute its units."""
    if target:
        check_frame_dep(tx, tree, row["id"], row["parent"], target, deadlock)
        tx.mark_has_dependents(target)
    tx.update_job(row["id"], {"frame_dep": target, "updated_at": tree.now})
    refresh_frame_waits(tx, tree, row["id"])


def refresh_frame_waits(tx: Tx, tree: Tree, job_id: int) -> None:
    """Recompute whether the job's waiting units wait for frames (after an edit)."""
    row = tx.job(job_id)
    if row is None:
        return
    units = [row] if not row["children"] else tx.frame_units(job_id, None)
    for unit in units:
        if unit["children"] or unit["state"] not in (WAITING, PENDING):
            continue
        blocked = tree.frame_blocker(unit) is not None or tx.unfinished_deps(unit["id"]) > 0
        tree.set_pending(unit["id"], blocked)
