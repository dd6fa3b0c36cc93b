"""The read side: the queries behind the REST API and the web page (jobs, workers, events,
audit, affinities, logs, statistics). One read transaction each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import estimates, views, webhooks
from ..audit import audit_view
from ..errors import NotFound
from ..model import ERROR, FINISHED, PENDING, WAITING, WORKING, ValidationError
from ..store.base import SORTABLE, Row, Tx
from .context import Context

SORT_DEFAULT = "h_key"


C4_AFFINITY_SLOTS = 63  # Coalition 4's registry: bits of a 64-bit mask


class Reads:
    """Read-only use cases; one read transaction each."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.store = ctx.store
        self.logs = ctx.logs
        self.clock = ctx.clock

    def job(self, job_id: int) -> dict[str, Any]:
        """One job with its dependency ids."""
        now = self.clock()

        def fn(tx: Tx) -> dict[str, Any]:
            row = tx.job(job_id)
            if row is None:
                raise NotFound(f"job {job_id} not found")
            return views.job_view(row, now, tx.deps(job_id))

        return self.ctx.read(fn)

    def job_rows(self, ids: Sequence[int]) -> list[Row]:
        """Raw rows (for permission checks by the auth layer)."""
        return self.ctx.read(lambda tx: tx.jobs(ids))

    def children(self, job_id: int) -> list[dict[str, Any]]:
        """The direct children of a job (0: the root jobs), in dispatch order."""
        now = self.clock()

        def fn(tx: Tx) -> list[dict[str, Any]]:
            if job_id and tx.job(job_id) is None:
                raise NotFound(f"job {job_id} not found")
            return [views.job_view(r, now) for r in tx.children(job_id)]

        return self.ctx.read(fn)

    def list_jobs(
        self,
        filters: Mapping[str, Any],
        sort: str,
        descending: bool,
        offset: int,
        limit: int | None,
        with_dependencies: bool = False,
    ) -> tuple[list[dict[str, Any]], int, float]:
        """A filtered, sorted page of jobs, the total count, and the server time; with
        `with_dependencies`, each job carries its dependency ids (one query per page)."""
        now = self.clock()
        sort_col = SORT_DEFAULT if sort in ("", "order") else sort
        if sort_col not in SORTABLE:
            public = sorted(SORTABLE - {SORT_DEFAULT})
            raise ValidationError(f"cannot sort by {sort!r}; sortable: {', '.join(public)}")

        def fn(tx: Tx) -> tuple[list[Row], int, dict[int, list[int]]]:
            rows, total = tx.list_jobs(filters, sort_col, descending, offset, limit)
            deps: dict[int, list[int]] = {}
            if with_dependencies and rows:
                for job_id, dep in tx.deps_of([r["id"] for r in rows]):
                    deps.setdefault(job_id, []).append(dep)
            return rows, total, deps

        rows, total, deps = self.ctx.read(fn)
        if with_dependencies:
            return [views.job_view(r, now, deps.get(r["id"], [])) for r in rows], total, now
        return [views.job_view(r, now) for r in rows], total, now

    def dependencies(self, job_id: int) -> list[dict[str, Any]]:
        """The job objects a job depends on."""
        now = self.clock()

        def fn(tx: Tx) -> list[dict[str, Any]]:
            if tx.job(job_id) is None:
                raise NotFound(f"job {job_id} not found")
            return [views.job_view(r, now) for r in tx.jobs(tx.deps(job_id))]

        return self.ctx.read(fn)

    def children_dependencies(self, job_id: int) -> list[dict[str, int]]:
        """`[{id, dependency}]` for every child of a job."""

        def fn(tx: Tx) -> list[dict[str, int]]:
            if job_id and tx.job(job_id) is None:
                raise NotFound(f"job {job_id} not found")
            ids = [r["id"] for r in tx.children(job_id, ("id",))]
            return [{"id": a, "dependency": b} for a, b in tx.deps_of(ids)]

        return self.ctx.read(fn)

    def frame_stats(self, job_id: int, frames_shown: int = 5000) -> dict[str, Any]:
        """Per-frame figures of a group (each child a frame; a job alone is its own frame):
        time, CPU and peak memory of each frame's last finished run, their min/mean/max, and
        the time left (estimates.time_left; None when it cannot be told yet)."""
        now = self.clock()

        def fn(tx: Tx) -> dict[str, Any]:
            job = tx.job(job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            kids = tx.children(job_id, ("id", "title", "state", "start_time", "paused"))
            if kids:
                runs = {r["job_id"]: r for r in tx.finished_runs(job_id)}
            else:  # a job alone: its own runs
                kids = [job]
                mine = [r for r in tx.events(job_id, None, None, 1000) if r["state"] == FINISHED]
                runs = {job_id: mine[0]} if mine else {}
            thumb = tx.thumbnail(job_id)
            return {"kids": kids, "runs": runs, "thumb": thumb}

        found = self.ctx.read(fn)
        frames, times, cpus, peaks = [], [], [], []
        waiting, running_for = 0, []
        for kid in found["kids"]:
            run = found["runs"].get(kid["id"])
            if kid["state"] == WORKING:
                running_for.append(max(0.0, now - (kid["start_time"] or now)))
            elif kid["state"] in (WAITING, PENDING) and not kid["paused"]:
                waiting += 1
            frame: dict[str, Any] = {"id": kid["id"], "title": kid["title"], "state": kid["state"]}
            if run is not None and kid["state"] == FINISHED:
                times.append(float(run["duration"] or 0))
                cpus.append(float(run["cpu_time"] or 0))
                peaks.append(float(run["peak_memory"] or 0))
                frame.update(
                    time=round(times[-1], 3), cpu_time=round(cpus[-1], 3), peak_memory=int(peaks[-1])
                )
            frames.append(frame)
        left = estimates.time_left(times, waiting, running_for)
        return {
            "id": job_id,
            "frames": frames[:frames_shown],
            "frame_count": len(frames),
            "time": estimates.spread(times).as_dict(),
            "cpu_time": estimates.spread(cpus).as_dict(),
            "peak_memory": estimates.spread(peaks).as_dict(),
            "waiting": waiting,
            "running": len(running_for),
            "time_left": None if left is None else round(left, 1),
            # The newest image of the job's output (GET /api/jobs/ID/thumbnail), if any.
            "thumbnail": None
            if found["thumb"] is None
            else {"source": found["thumb"]["source"], "updated_at": found["thumb"]["updated_at"]},
        }

    def thumbnail(self, job_id: int) -> tuple[str, bytes]:
        """The newest thumbnail of a job (or of anything in a group): (mime, image)."""
        row = self.ctx.read(lambda tx: tx.thumbnail(job_id))
        if row is None:
            raise NotFound(f"job {job_id} has no thumbnail")
        return str(row["mime"]), bytes(row["data"])

    def webhook_deliveries(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest webhook deliveries and their status, newest first."""
        return [webhooks.delivery_view(r) for r in self.ctx.read(lambda tx: tx.outbox(limit, "webhook"))]

    def farm_counts(self) -> dict[str, dict[str, int]]:
        """Leaf jobs by state (PAUSED apart) and worker slots by state: cheap, for metrics."""

        hour_ago = self.clock() - 3600

        def fn(tx: Tx) -> dict[str, dict[str, int]]:
            workers: dict[str, int] = {}
            for w in tx.workers():
                workers[w["state"]] = workers.get(w["state"], 0) + 1
            # The cloud autoscaler's decisions are its events (worker "autoscaler").
            decisions = len(tx.events(None, "autoscaler", hour_ago, 100000))
            limits = {
                f"{kind}:{row['name']}": int(row[kind] or 0)
                for row in tx.limits()
                for kind in ("capacity", "in_use", "external")
            }
            return {
                "jobs": tx.count_jobs_by_state(),
                "workers": workers,
                "autoscaler": {"hour": decisions},
                "limits": limits,
            }

        return self.ctx.read(fn)

    def require_job(self, job_id: int) -> Row:
        """The row of a job, or NotFound."""
        rows = self.job_rows([job_id])
        if not rows:
            raise NotFound(f"job {job_id} not found")
        return rows[0]

    def workers(self) -> list[dict[str, Any]]:
        """Every worker."""
        return [views.worker_view(r) for r in self.ctx.read(lambda tx: tx.workers())]

    def worker(self, name: str) -> dict[str, Any]:
        """One worker."""
        row = self.ctx.read(lambda tx: tx.worker(name))
        if row is None:
            raise NotFound(f"worker {name!r} not found")
        return views.worker_view(row)

    def events(
        self,
        job: int | None,
        worker: str | None,
        howlong: float | None,
        limit: int = 5000,
        user: str | None = None,
    ) -> list[dict[str, Any]]:
        """Run events, newest first; `howlong` seconds back (None: all); `user`: only the
        runs of that user's jobs."""
        now = self.clock()
        since = now - howlong if howlong is not None and howlong >= 0 else None
        rows = self.ctx.read(lambda tx: tx.events(job, worker, since, limit, user))
        return [views.event_view(r, now) for r in rows]

    def audit(self, filters: Mapping[str, Any], limit: int = 500) -> list[dict[str, Any]]:
        """Audit records, newest first (filters: see Tx.audit)."""
        return [audit_view(r) for r in self.ctx.read(lambda tx: tx.audit(filters, limit))]

    def affinities(self) -> dict[str, str]:
        """The numbered registry of affinity names, every slot from 1 to 63 (and any number
        used above) included, empty names too: Coalition 4 answered all 63 slots, and its
        client indexes the answer by slot number."""
        named = self.ctx.read(lambda tx: tx.affinities())
        top = max([C4_AFFINITY_SLOTS, *named])
        return {str(n): named.get(n, "") for n in range(1, top + 1)}

    def log(self, job_id: int) -> str:
        """The whole log of a job, decoded."""
        self.require_job(job_id)
        return self.logs.read(job_id).decode("utf-8", "replace")

    def log_range(
        self, job_id: int, offset: int | None, limit: int | None, tail: int | None
    ) -> dict[str, Any]:
        """A byte range of a job's log: {data, offset, size}."""
        self.require_job(job_id)
        size = self.logs.size(job_id)
        if tail is not None:
            data, start = self.logs.tail(job_id, tail)
        else:
            start = max(0, offset or 0)
            data = self.logs.read(job_id, start, limit)
        # Cut at a character boundary so a multi-byte character is never split across reads.
        text, used = _decode_prefix(data)
        return {"data": text, "offset": start, "next": start + used, "size": size}

    def stats(self, hours: float = 6.0, buckets: int = 72) -> dict[str, Any]:
        """Counts by state, workers by state, throughput and a running-jobs history."""
        now = self.clock()
        since = now - hours * 3600

        def fn(tx: Tx) -> tuple[dict[str, int], list[Row], list[Row]]:
            return tx.count_jobs_by_state(), tx.workers(), tx.events(None, None, since, 200000)

        counts, workers, events = self.ctx.read(fn)
        by_state: dict[str, int] = {}
        for w in workers:
            by_state[w["state"]] = by_state.get(w["state"], 0) + 1
        step = hours * 3600 / buckets
        running = [0] * buckets
        finished = [0] * buckets
        errors = [0] * buckets
        for e in events:
            end = now if e["state"] == WORKING else e["start"] + (e["duration"] or 0)
            first = max(0, int((e["start"] - since) // step))
            last = min(buckets - 1, int((end - since) // step))
            for b in range(first, last + 1):
                running[b] += 1
            if e["state"] in (FINISHED, ERROR) and end >= since:
                b = min(buckets - 1, int((end - since) // step))
                (finished if e["state"] == FINISHED else errors)[b] += 1
        hour_ago = now - 3600
        done_last_hour = sum(
            1 for e in events if e["state"] == FINISHED and e["start"] + (e["duration"] or 0) >= hour_ago
        )
        return {
            "now": now,
            "jobs": counts,
            "workers": by_state,
            "workers_total": len(workers),
            "finished_last_hour": done_last_hour,
            "history": {
                "start": since,
                "step": step,
                "running": running,
                "finished": finished,
                "errors": errors,
            },
        }


def _decode_prefix(data: bytes) -> tuple[str, int]:
    """Decode the longest prefix of `data` that ends on a UTF-8 character boundary."""
    cut = len(data)
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        need = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2 if byte >= 0xC0 else 1
        if need > back:
            cut = len(data) - back  # the last character is incomplete: leave it for next read
        break
    return data[:cut].decode("utf-8", "replace"), cut
