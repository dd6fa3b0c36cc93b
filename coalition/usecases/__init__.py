"""The product's use cases, one module per actor, over one explicit `Context`.

    context.py    Context (store, clock, job logs, tag cache, settings, hooks) and Effects:
                  a write transaction returns its effects; they are applied once, after commit
    operator.py   people who run the farm: submit, edit, pause, start, reset, delete jobs;
                  dependencies; the affinity registry; edit, stop, delete workers
    jobdeps.py    dependency lists and moves under another group, each refused if it
                  closes a wait cycle (operator.py's commands call it)
    reads.py      everything the API and the web page read: jobs, workers, events, audit,
                  logs, statistics
    workers.py    the worker protocol: pickjob, heartbeat, endjob
    messages.py   what the protocol says and hears: Ping, SlotReport, RunReport, answers
    workerdraft.py  a worker row as a request sees it: read once, written once
    pick.py       the pick in pickjob, sync, endjob: rule plan, fair share, limits (Picker)
    runend.py     a reported run's end inside endjob: verdict, retry, requeue (RunEnds)
    failing.py    failure bookkeeping inside those: log-rule verdicts, host blocks, SICK workers
    hostblocks.py what operators see and do about them: list and lift blocks, clear SICK
    upkeep.py     periodic work under a lease: the reaper, purges
    cloudfarm.py  the cloud autoscaler's view of the farm (cloud.base.Farm)
    openjd.py     Open Job Description jobs: the tree a template expands into, in one
                  transaction; the template a worker fetches to run a task
    access.py     web login sessions
    runs.py       run transitions several actors share (a running job taken back)
    tagcache.py   effective tag sets: the committed cache and a per-transaction view

`server/` and `cli.py` call these classes; none of them sees a transaction. The classes do
not inherit from each other: what they share is the context and the functions in runs.py;
WorkerProtocol holds its Picker and RunEnds and calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cloudfarm import CloudFarm
from .context import Context, Effects, Settings
from .hostblocks import HostBlocks
from .openjd import OpenJDJobs
from .operator import Operator
from .reads import Reads
from .upkeep import Upkeep
from .workers import WorkerProtocol


@dataclass
class UseCases:
    """Every actor's use cases over one context."""

    ctx: Context
    operator: Operator
    reads: Reads
    workers: WorkerProtocol
    upkeep: Upkeep
    cloud: CloudFarm
    blocks: HostBlocks
    openjd: OpenJDJobs

    @classmethod
    def over(cls, ctx: Context) -> UseCases:
        """All use cases over `ctx`."""
        return cls(
            ctx,
            Operator(ctx),
            Reads(ctx),
            WorkerProtocol(ctx),
            Upkeep(ctx),
            CloudFarm(ctx),
            HostBlocks(ctx),
            OpenJDJobs(ctx),
        )


__all__ = ["Context", "Effects", "Settings", "UseCases"]
