"""Job-to-job dependencies on the operator's side: setting a job's dependency list, moving a
job under another group (it then inherits that group's dependencies), and the wait-cycle check
both go through (`deadlock`, which framedeps.py's frame dependencies and a submission's also
use). Functions over the caller's transaction, like framedeps.py; kept apart from operator.py
to keep each module small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..hierarchy import Tree
from ..model import WORKING, ValidationError
from ..store.base import Row, Tx


def set_deps(tx: Tx, tree: Tree, job_id: int, deps: list[int]) -> None:
    """Replace a job's dependency list (missing jobs and cycles refused) and set whether it is
    pending."""
    if job_id in deps:
        raise ValidationError(f"dependencies: job {job_id} cannot depend on itself")
    rows = tx.jobs(deps)
    missing = sorted(set(deps) - {r["id"] for r in rows})
    if missing:
        raise ValidationError(f"dependencies: job(s) {', '.join(map(str, missing))} do not exist")
    cycle = deadlock(tx, tree, job_id, deps)
    if cycle is not None:
        raise ValidationError(
            f"dependencies: job {job_id} cannot depend on job {cycle[0]}: "
            f"job {cycle[0]} already waits for job {cycle[1]} (a cycle)"
        )
    tx.set_deps(job_id, deps)
    tree.set_pending(job_id, tx.unfinished_deps(job_id) > 0)


def deadlock(tx: Tx, tree: Tree, job_id: int, deps: Iterable[int]) -> tuple[int, int] | None:
    """Would making `job_id` wait for `deps` create a wait cycle? Returns (dep, culprit).

    A job waits for its dependencies, a group waits for its children, and a job inherits
    the dependencies of its ancestors (a pending group holds its whole subtree back).
    """
    targets = {r["id"] for r in tree.subtree(job_id, ("id",))}
    for dep in deps:
        seen: set[tuple[int, bool]] = set()
        stack: list[tuple[int, bool]] = [(dep, True)]  # (job, expand its children too)
        while stack:
            node, full = stack.pop()
            if (node, full) in seen:
                continue
            seen.add((node, full))
            if full and node in targets:
                return dep, node
            row = tx.job(node)
            if row is None:
                continue
            stack.extend((d, True) for d in tx.deps(node))
            if row["frame_dep"]:  # it (or its children) waits for that job's frames
                stack.append((row["frame_dep"], True))
            if row["parent"]:
                stack.append((row["parent"], False))  # its ancestors' dependencies only
            if full and row["children"]:
                stack.extend((c["id"], True) for c in tx.children(node, ("id",)))
    return None


def move(
    tx: Tx,
    tree: Tree,
    job_id: int,
    new_parent: int,
    now: float,
    parent_guard: Callable[[Row], None] | None = None,  # operator.ParentGuard
) -> None:
    """Put a job under another group (0: the root), its derived fields and both groups'
    counters following; refused into its own subtree, under a running job, or where the
    dependencies it would inherit close a wait cycle."""
    row = tx.job(job_id)
    assert row is not None
    if new_parent == row["parent"]:
        return
    if new_parent:
        prow = tx.job(new_parent)
        if prow is None:
            raise ValidationError(f"parent job {new_parent} does not exist")
        if parent_guard is not None:
            parent_guard(prow)
        if new_parent == job_id or new_parent in {r["id"] for r in tree.subtree(job_id, ("id",))}:
            raise ValidationError(f"job {job_id} cannot move into itself or its own subtree")
        if not prow["children"] and prow["state"] == WORKING:
            raise ValidationError(f"parent job {new_parent} is running: it cannot become a group now")
        chain_deps = []
        for anc in [new_parent, *tree.ancestors(new_parent)]:
            chain_deps += tx.deps(anc)
        cycle = deadlock(tx, tree, job_id, chain_deps)
        if cycle is not None:
            raise ValidationError(
                f"cannot move job {job_id} under job {new_parent}: the new group waits for job "
                f"{cycle[0]}, which waits for job {cycle[1]} (a cycle)"
            )
    old_parent = row["parent"]
    tx.update_job(job_id, {"parent": new_parent, "updated_at": now})
    tree.rederive(job_id)
    if old_parent:
        tree.recount(old_parent)
    if new_parent:
        tree.recount(new_parent)
