"""What operators see and do about failing hosts: the blocks in force, lifting them, and
clearing SICK workers (docs/failures.md). The bookkeeping itself is usecases/failing.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..audit import NOBODY, Actor, record_audit
from ..errors import NotFound
from ..store.base import Row, Tx
from .context import Context, Effects
from .failing import Failures, host_of


def block_view(row: Row) -> dict[str, Any]:
    """A block as the API serves it."""
    return {
        "job_id": int(row["job_id"]),
        "worker": row["worker"],
        "failures": int(row["failures"]),
        "last_failure": int(row["last_at"] or 0),
        "blocked_until": int(min(float(row["blocked_until"]), 2**53)),
        "reason": row["reason"],
    }


class HostBlocks:
    """Blocks of workers from jobs, and SICK workers, for people."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def blocks(self, job_id: int | None = None, worker: str | None = None) -> list[dict[str, Any]]:
        """The blocks in force, newest first; for a job, its own and its group's (blockscope)."""
        now = self.ctx.clock()

        def fn(tx: Tx) -> list[Row]:
            host = None if worker is None else host_of(tx, worker)  # a slot's are its host's
            if job_id is None:
                return tx.host_blocks(now, worker=host)
            job = tx.job(job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            rows = tx.host_blocks(now, worker=host, job_id=job_id)
            if job["parent"]:
                rows += tx.host_blocks(now, worker=host, job_id=int(job["parent"]))
            return rows

        return [block_view(r) for r in self.ctx.store.read(fn)]

    def lift(self, job_id: int, workers: Sequence[str] | None = None, actor: Actor = NOBODY) -> int:
        """Lift a job's blocks (on some workers, or all) and forget their failure counts;
        returns how many were lifted."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> int:
            job = tx.job(job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            record_audit(
                tx, actor, "unblock", job["user"], [job_id], now, {"workers": list(workers or ["*"])}
            )
            lifted = len(tx.host_blocks(now, job_id=job_id)) if workers is None else 0
            if workers is None:
                tx.lift_host_blocks(job_id)
            else:
                for name in dict.fromkeys(host_of(tx, n) for n in workers):
                    lifted += len(tx.host_blocks(now, worker=name, job_id=job_id))
                    tx.lift_host_blocks(job_id, name)
            fx.note(f"job {job_id}: {lifted} host block(s) lifted by {actor.user or 'someone'}")
            return lifted

        return self.ctx.write(fn)

    def clear_sick(self, names: Sequence[str], actor: Actor = NOBODY) -> list[str]:
        """Put SICK workers back to work; returns those that were sick."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> list[str]:
            rows = tx.workers(names)
            missing = sorted(set(names) - {r["name"] for r in rows})
            if missing:
                raise NotFound(f"worker(s) {', '.join(missing)} not found")
            record_audit(tx, actor, "clearsick", "", list(names), now)
            who = actor.user or "an operator"
            return [r["name"] for r in rows if Failures.heal(tx, r, f"cleared by {who}", now)]

        return self.ctx.write(fn)
