"""Failure handling inside the worker protocol's transactions: log-rule verdicts, host-failure
counting, blocks and sick workers (docs/failures.md). The decisions are coalition/failures.py's;
this applies them through the transaction, and mails and events go in the same commit.
"""

from __future__ import annotations

from typing import Any

from .. import failures
from ..failures import LogRule
from ..model import W_SICK, W_WAITING, W_WORKING
from ..store.base import Row, Tx
from .context import Context, Effects


def host_key(worker: Any) -> str:
    """The host a worker row (a slot) belongs to: failures, blocks and sickness are the
    host's, shared by all its slots (a packing host runs jobs on several)."""
    return str(worker["host"] or worker["name"])


def host_of(tx: Tx, name: str) -> str:
    """The host of the worker named `name` (the name itself when unknown)."""
    row = tx.worker(name)
    return host_key(row) if row is not None else name


class Verdict:
    """A log rule's decision about the current run, as kept in `jobs.rule_hit`."""

    def __init__(self, name: str, action: str):
        self.name = name
        self.action = action  # "fail", "succeed", "requeue", "sick" or "limit:NAME[:S]"

    @property
    def kind(self) -> str:
        """The action without its limit arguments."""
        return self.action.split(":", 1)[0]

    @property
    def kills(self) -> bool:
        """Whether the run is ended at once."""
        return self.kind in failures.KILLING

    @property
    def reason(self) -> str:
        """The run's reason."""
        return f"log rule {self.name}: {self.action}"

    @staticmethod
    def text(rule: LogRule) -> str:
        """What `jobs.rule_hit` keeps of a matched rule."""
        return f"{rule.name} {rule.action_text}"

    @classmethod
    def of(cls, job: Row) -> Verdict | None:
        """The verdict recorded on a job's current run, if any."""
        text = str(job.get("rule_hit") or "")
        name, _, action = text.partition(" ")
        return cls(name, action) if name and action else None


class Failures:
    """The failure bookkeeping the worker protocol calls at beats, ends and picks."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._parsed: dict[str, tuple[LogRule, ...]] = {}  # a job's rule text -> rules

    @property
    def policy(self) -> failures.FailurePolicy:
        """The farm's failure settings."""
        return self.ctx.settings.failures

    # -- log rules ------------------------------------------------------------------------------
    def rules_of(self, job: Row) -> tuple[LogRule, ...]:
        """A job's own rules, then the farm's."""
        text = str(job.get("logrules") or "")
        if not text:
            return self.policy.rules
        rules = self._parsed.get(text)
        if rules is None:
            try:
                rules = failures.parse_rules(text)
            except failures.RuleError:
                rules = ()  # validated at submission; a row edited by hand must not break beats
            if len(self._parsed) > 1024:
                self._parsed.clear()
            self._parsed[text] = rules
        return rules + self.policy.rules

    def match(self, job: Row, text: str) -> str:
        """The `rule_hit` to record if a rule matches new output of a run that has no verdict
        yet ("" if none does): the first verdict stands for the rest of the run."""
        if job.get("rule_hit") or not text:
            return ""
        rule = failures.match_rules(self.rules_of(job), text)
        return Verdict.text(rule) if rule is not None else ""

    # -- effective per-job settings ---------------------------------------------------------------
    def stalltimeout(self, job: Row) -> int:
        """The stall timeout the worker enforces for this job (0: none)."""
        return int(failures.effective(int(job.get("stalltimeout") or 0), self.policy.stalltimeout))

    def minruntime(self, job: Row) -> float:
        """The minimum run time of a successful run of this job (0: none)."""
        return float(failures.effective(int(job.get("minruntime") or 0), self.policy.minruntime))

    # -- picks ----------------------------------------------------------------------------------
    def skip_ranges(self, tx: Tx, worker: Any, now: float) -> list[tuple[str, str]]:
        """The ordering-key ranges of the jobs this worker is blocked from. Costs nothing for
        a worker without blocks (workers.blocked_until says whether it may have any)."""
        if float(worker["blocked_until"] or 0) <= now:
            return []
        keys = tx.blocked_keys(host_key(worker), now)
        if not keys:
            worker.set(blocked_until=0.0)  # lifted or deleted: no more lookups until the next block
        return [failures.key_range(k) for k in keys]

    # -- failed runs ----------------------------------------------------------------------------
    def count(self, tx: Tx, fx: Effects, job: Row, worker: Any, reason: str, now: float) -> None:
        """Count a failed run of `job` on `worker`: block the worker from the job after the
        job's (or the farm's) `hostfails` failures, and mark it SICK when runs of several
        different jobs failed on it within `sickwindow`."""
        policy = self.policy
        threshold = int(failures.effective(int(job.get("hostfails") or 0), policy.hostfails))
        scope = failures.block_scope(policy, int(job["id"]), int(job["parent"] or 0))
        group = int(job["parent"] or 0) or int(job["id"])
        name = host_key(worker)
        forgotten = now - policy.forgive if policy.forgive > 0 else 0.0
        row = tx.count_host_failure(scope, name, group, now, forgotten, failures.clip(reason))
        until = failures.blocked_until(int(row["failures"]), threshold, now, policy.forgive)
        if until and not float(row["blocked_until"] or 0) > now:
            until = min(until, 1e15)  # "never forgiven" stays a finite number in the database
            tx.block_host(scope, name, until)
            worker.set(blocked_until=max(until, float(worker["blocked_until"] or 0)))
            for sibling in self._siblings(tx, worker):  # the host's other slots look it up too
                if float(sibling["blocked_until"] or 0) < until:
                    tx.update_worker(sibling["name"], {"blocked_until": until})
            what = "group" if scope != job["id"] else "job"
            fx.note(f"worker {name} is blocked from {what} {scope} after {row['failures']} failed runs")
        if policy.sickjobs > 1 and worker["state"] != W_SICK:
            distinct = tx.failed_jobs_on(name, now - policy.sickwindow)
            if failures.is_sick(distinct, policy):
                self.mark_sick(
                    tx,
                    fx,
                    worker,
                    f"runs of {distinct} different jobs failed within {policy.sickwindow:g} s "
                    f"(last: job {job['id']}, {reason})",
                    now,
                )

    @staticmethod
    def _siblings(tx: Tx, worker: Any) -> list[Row]:
        """The other slots of the worker's host."""
        if not worker["host"]:
            return []
        return [r for r in tx.host_workers(worker["host"]) if r["name"] != worker["name"]]

    @staticmethod
    def inherited(tx: Tx, host: str) -> dict[str, Any]:
        """What a new slot of `host` takes from its siblings: their blocks, their sickness."""
        out: dict[str, Any] = {}
        for sibling in tx.host_workers(host):
            if float(sibling["blocked_until"] or 0) > float(out.get("blocked_until", 0.0)):
                out["blocked_until"] = float(sibling["blocked_until"])
            if sibling["state"] == W_SICK:
                out.update(state=W_SICK, reason=sibling["reason"])
        return out

    def catch_sickness(self, tx: Tx, worker: Any) -> None:
        """A slot whose host turned SICK while it ran a job turns SICK when the run ends."""
        if worker["state"] == W_SICK or not worker["host"]:
            return
        for sibling in self._siblings(tx, worker):
            if sibling["state"] == W_SICK:
                worker.set(state=W_SICK, reason=sibling["reason"])
                return

    def mark_sick(self, tx: Tx, fx: Effects, worker: Any, reason: str, now: float) -> None:
        """Turn a worker's host SICK: its slots take no job until its check command passes
        or an operator clears it (a slot running a job turns SICK when the run ends). An
        event, a mail and a `worker.sick` webhook say so, all in this transaction: a host
        that turned SICK is always told, one whose transaction was rolled back never is."""
        if worker["state"] == W_SICK:
            return
        self.catch_sickness(tx, worker)
        if worker["state"] == W_SICK:
            # Its host turned SICK while this slot ran a job that failed since: the host was
            # told about once, when it turned; this slot only joins it.
            return
        name = host_key(worker)
        why = failures.clip(f"sick: {reason}")
        worker.set(state=W_SICK, reason=why)
        for sibling in self._siblings(tx, worker):
            if sibling["state"] not in (W_SICK, W_WORKING):
                tx.update_worker(sibling["name"], {"state": W_SICK, "reason": why})
        tx.insert_event(
            {
                "worker": name,
                "job_id": 0,
                "job_title": "",
                "state": W_SICK,
                "start": now,
                "duration": 0.0,
                "reason": why,
            }
        )
        fx.note(f"worker {name} is SICK: {reason}")
        for address in self.ctx.settings.sick_mail:
            tx.enqueue_mail(
                {
                    "created_at": now,
                    "dedupe": f"sick:{name}:{int(now)}:{address}"[:191],
                    "recipient": address,
                    "subject": f"[coalition] worker {name} is SICK"[:200],
                    "body": f"Worker {name} takes no more jobs: {why}.\n\n"
                    "It is cleared when its check command ([worker] checkcommand) passes, or by an "
                    f"operator: coalition workers clearsick {name}\n",
                    "status": "queued",
                    "attempts": 0,
                    "next_try": now,
                    "last_error": "",
                    "sent_at": 0.0,
                }
            )
        data = {
            "worker": {
                "name": worker["name"],  # the slot whose failure decided it
                "host": name,  # what is SICK: every slot of the host
                "ip": worker["ip"],
                "last_job": worker["last_job"],
                "reason": why,
            }
        }
        for hook in self.ctx.on_event:
            hook(tx, "worker.sick", data)

    @classmethod
    def heal(cls, tx: Tx, worker: Row, how: str, now: float) -> bool:
        """Clear a SICK worker and the other slots of its host (its check passed, or an
        operator said so); False if it was not sick. The event records who or what cleared it."""
        if worker["state"] != W_SICK:
            return False
        tx.update_worker(worker["name"], {"state": W_WAITING, "reason": ""})
        for sibling in cls._siblings(tx, worker):
            if sibling["state"] == W_SICK:
                tx.update_worker(sibling["name"], {"state": W_WAITING, "reason": ""})
        tx.insert_event(
            {
                "worker": worker["name"],
                "job_id": 0,
                "job_title": "",
                "state": "CLEARED",
                "start": now,
                "duration": 0.0,
                "reason": failures.clip(how),
            }
        )
        return True
