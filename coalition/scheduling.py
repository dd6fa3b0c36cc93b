"""Pure scheduling policy: ordering keys, tag matching, derived group state, retry and timeout
decisions. No I/O, no clock: callers pass `now`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The ordering key is a string compared byte-wise: for each level from the root down, the
# inverted priority then the id, both fixed-width hex. Higher priority sorts first, ties go to
# the older (smaller) id, and a parent's position dominates its children's: the order is
# lexicographic over the ancestor chain at any depth (Coalition 4 packed 8 bits a level into
# one 64-bit integer, which capped both priority and depth).
_PRIO_DIGITS = 8  # priorities 0 .. 2**31-1
_ID_DIGITS = 11  # ids up to 2**44
PART_LEN = _PRIO_DIGITS + _ID_DIGITS
PRIO_LEN = _PRIO_DIGITS  # the inverted priority that starts each level's part
MAX_DEPTH = 100  # keeps the key within an indexable 1900 bytes on MySQL
_PRIO_MAX = 2**31 - 1


def key_part(priority: int, job_id: int) -> str:
    """One level of the ordering key."""
    return f"{_PRIO_MAX - priority:08x}{job_id:011x}"


# -- resource requests (docs/scheduling.md, "Resources and packing") ---------------------------
@dataclass(frozen=True)
class Need:
    """What a job asks of a host: CPU cores, memory (MB), GPUs, or the whole host.

    Zero means "no request". A job that requests nothing at all is *bare*: it takes one slot
    of a worker with fixed slots, or a whole host that packs (what one job per host did before
    resources existed). Children inherit each field their own request leaves at zero.
    """

    cores: int = 0
    memory: int = 0
    gpus: int = 0
    exclusive: bool = False

    @property
    def bare(self) -> bool:
        """Whether the job asks for nothing."""
        return not (self.cores or self.memory or self.gpus or self.exclusive)

    def under(self, parent: Need) -> Need:
        """This job's own request with its parent's filling the fields it leaves at zero."""
        return Need(
            cores=self.cores or parent.cores,
            memory=self.memory or parent.memory,
            gpus=self.gpus or parent.gpus,
            exclusive=self.exclusive or parent.exclusive,
        )

    def text(self) -> str:
        """Canonical text ("" when bare): part of the tag set's key, so the pick can keep
        the jobs that do not fit out of its index seeks instead of scanning past them."""
        parts = [
            f"{k}={v}" for k, v in (("cores", self.cores), ("memory", self.memory), ("gpus", self.gpus)) if v
        ]
        if self.exclusive:
            parts.append("exclusive")
        return ",".join(parts)

    def as_dict(self) -> dict[str, int]:
        """The request as the worker protocol and the API carry it."""
        return {
            "cores": self.cores,
            "memory": self.memory,
            "gpus": self.gpus,
            "exclusive": int(self.exclusive),
        }


BARE = Need()
_NEED_PART = re.compile(r"(cores|memory|gpus)=([0-9]{1,12})|exclusive")


def need_from_text(text: str) -> Need | None:
    """Inverse of Need.text (None if `text` is not a need's text)."""
    values: dict[str, Any] = {}
    for part in text.split(","):
        m = _NEED_PART.fullmatch(part)
        if m is None:
            return None
        if m.group(1):
            values[m.group(1)] = int(m.group(2))
        else:
            values["exclusive"] = True
    return Need(**values)


@dataclass(frozen=True)
class Free:
    """What a worker offers when it asks for a job (docs/protocol.md, `free`).

    `cores`, `memory` and `gpus` are free for a job that states its request; `bare` says
    whether a job that requests nothing may come (a fixed slot: always; a packing host: only
    when it runs nothing else), `whole` whether the host is free for an `exclusive` job, whose
    request is then checked against the host's totals. `reserve_gpus`: the host keeps its
    GPUs for jobs that ask for GPUs.
    """

    cores: int
    memory: int
    gpus: int
    bare: bool = True
    whole: bool = False
    total_cores: int = 0
    total_memory: int = 0
    total_gpus: int = 0
    reserve_gpus: bool = False


def fits(need: Need, free: Free | None) -> bool:
    """Whether a job with `need` may go to a worker that offers `free`. A worker that offers
    nothing (None: a Coalition 4 worker) takes only jobs that request nothing."""
    if free is None:
        return need.bare
    if free.reserve_gpus and need.gpus == 0:
        return False
    if need.bare:
        return free.bare
    if need.exclusive:
        return (
            free.whole
            and need.cores <= free.total_cores
            and need.memory <= free.total_memory
            and need.gpus <= free.total_gpus
        )
    return max(1, need.cores) <= free.cores and need.memory <= free.memory and need.gpus <= free.gpus


def consume(free: Free, need: Need) -> Free:
    """What is left of a packing host's shared `free` once a job with `need` is handed out in
    the same sync (a job that requests nothing, or an exclusive one, takes the whole host)."""
    if need.bare or need.exclusive:
        return Free(0, 0, 0, bare=False, whole=False, reserve_gpus=free.reserve_gpus)
    return Free(
        cores=max(0, free.cores - max(1, need.cores)),
        memory=max(0, free.memory - need.memory),
        gpus=max(0, free.gpus - need.gpus),
        bare=False,
        whole=False,
        total_cores=free.total_cores,
        total_memory=free.total_memory,
        total_gpus=free.total_gpus,
        reserve_gpus=free.reserve_gpus,
    )


@dataclass(frozen=True)
class Shape:
    """An effective tag set and request: what the tagsets table numbers (one id each)."""

    tags: frozenset[str]
    need: Need = BARE


def short_of(need: Need, cores: int, memory: int, gpus: int) -> list[str]:
    """What a host with these totals lacks for `need`, in words ("4 GPUs"); [] if it has it."""
    out = []
    if max(1, need.cores) > cores:
        out.append(f"{max(1, need.cores)} core{'s' if need.cores > 1 else ''}")
    if need.memory > memory:
        out.append(f"{need.memory} MB of memory")
    if need.gpus > gpus:
        out.append(f"{need.gpus} GPU{'s' if need.gpus > 1 else ''}")
    return out


def fit_plan(
    plan: Sequence[Sequence[int]], shapes: Mapping[int, Shape], free: Free | None
) -> list[list[int]]:
    """A rule plan (rule_plan) narrowed to the tag sets whose request fits `free`; lines
    left empty are dropped. Tag sets missing from `shapes` request nothing."""
    out: list[list[int]] = []
    for line in plan:
        kept = [tid for tid in line if fits(shapes[tid].need if tid in shapes else BARE, free)]
        if kept:
            out.append(kept)
    return out


@dataclass(frozen=True)
class Derived:
    """What a job inherits from its ancestors, recomputed when the chain changes."""

    h_key: str
    h_depth: int
    h_blocked: bool  # paused or dependency-pending self or ancestor: nothing below may run
    tags: frozenset[str]  # effective tags: own plus every ancestor's
    need: Need = BARE  # effective request: own fields, else the nearest ancestor's


ROOT = Derived(h_key="", h_depth=-1, h_blocked=False, tags=frozenset())


def derive(
    parent: Derived,
    job_id: int,
    priority: int,
    tags: Iterable[str],
    paused: bool,
    pending: bool,
    need: Need = BARE,
) -> Derived:
    """The derived fields of a job from its parent's and its own."""
    return Derived(
        h_key=parent.h_key + key_part(priority, job_id),
        h_depth=parent.h_depth + 1,
        h_blocked=parent.h_blocked or paused or pending,
        tags=parent.tags | frozenset(tags),
        need=need.under(parent.need),
    )


def tagset_text(tags: Iterable[str], need: Need = BARE) -> str:
    """Canonical text of a tag set and request, used as the tagsets table's unique key: the
    sorted tags, then `|` and the request's text when it asks for something."""
    text = ",".join(sorted(set(tags)))
    return text if need.bare else f"{text}|{need.text()}"


def tagset_from_text(text: str) -> frozenset[str]:
    """The tags of a tagset_text."""
    return shape_from_text(text).tags


def shape_from_text(text: str) -> Shape:
    """Inverse of tagset_text. (Tag names cannot hold `|`; one read from an older database
    that does is taken as a tag unless what follows its last `|` is a request's text.)"""
    head, sep, tail = text.rpartition("|")
    need = need_from_text(tail) if sep else None
    if need is None:
        head, need = text, BARE
    return Shape(frozenset(t for t in head.split(",") if t), need)


# A tag `linux or macos` asks for any one of its alternatives (OpenJD's anyOf: docs/openjd.md).
# Not `|`, which separates the tags from the request in a tag set's key.
ALTERNATIVES = " or "


def tags_met(tags: Iterable[str], offered: frozenset[str]) -> bool:
    """Whether a worker line offering `offered` meets every one of a job's tags. A tag made of
    alternatives (`linux or macos`) is met by a line that offers any of them; a plain tag only
    by itself (a tag with ` or ` in its own name is offered whole, and matches too)."""
    return all(
        tag in offered or (ALTERNATIVES in tag and any(a in offered for a in tag.split(ALTERNATIVES)))
        for tag in tags
    )


def with_offers(lines: Sequence[Iterable[str]], offers: Iterable[str]) -> list[list[str]]:
    """A worker's rule lines with the tags it offers itself (`openjd`, its OS family and CPU
    architecture: docs/openjd.md) added to each, so that it takes OpenJD jobs wherever its
    lines take jobs, and untagged jobs still after them; without lines, one line of them."""
    extra = list(offers)
    if not extra:
        return [list(line) for line in lines]
    return [list(dict.fromkeys([*line, *extra])) for line in lines or [[]]]


def rule_plan(lines: Sequence[Iterable[str]], tagsets: Mapping[int, frozenset[str]]) -> list[list[int]]:
    """For a worker's ordered rule lines, the tagset ids each line accepts, in preference order.

    A job matches a line when the line meets every one of its effective tags (tags_met: each
    offered, or one of a tag's `a or b` alternatives), and it has at least one. Jobs with
    no effective tags match any worker, after all its lines (an implicit last line). A tagset
    already served by an earlier line is not repeated.
    """
    plan: list[list[int]] = []
    seen: set[int] = set()
    for line in lines:
        offered = frozenset(line)
        ids = [
            tid
            for tid, tags in sorted(tagsets.items())
            if tags and tid not in seen and tags_met(tags, offered)
        ]
        seen.update(ids)
        if ids:
            plan.append(ids)
    empty = [tid for tid, tags in tagsets.items() if not tags]
    if empty:
        plan.append(empty)
    return plan


def group_state(total: int, total_finished: int, total_errors: int, total_working: int, pending: bool) -> str:
    """A group's state, derived from its leaf counters (Coalition 4's rule, pending first)."""
    if pending:
        return "PENDING"
    if total_errors > 0:
        return "ERROR"
    if total > 0 and total_finished == total:
        return "FINISHED"
    if total_working > 0:
        return "WORKING"
    return "WAITING"


def should_retry(fail_count: int, retry: int) -> bool:
    """After a failed run (fail_count includes it): run again while fewer than `retry` retries
    have been spent, i.e. at most 1 + retry runs in all (chapter 8: "retry up to retry times")."""
    return fail_count <= retry


def should_requeue_silent(requeues: int, limit: int) -> bool:
    """A job whose worker went silent goes back to WAITING without spending a retry, but only
    `limit` times: a job that kills its host must not loop for ever."""
    return requeues < limit


def job_timed_out(start_time: float, timeout: int, now: float, grace: float) -> bool:
    """A running job past its own timeout (plus grace for the worker to report it first)."""
    return timeout > 0 and start_time > 0 and now - start_time > timeout + grace


def worker_silent(ping_time: float, since: float, timeout: float, now: float) -> bool:
    """A worker is silent when neither its last ping nor `since` (when the observer started
    watching, so a restarted server does not reap everyone at once) is within `timeout`."""
    return now - max(ping_time, since) > timeout


def new_priority_after_child_error(priority: int, child_fail_count: int, every: int) -> int:
    """`decreasepriorityafter`: a group loses one priority point each `every` child errors."""
    if every > 0 and child_fail_count > 0 and child_fail_count % every == 0:
        return max(0, priority - 1)
    return priority


def log_slice(received: int, offset: int, chunk: bytes) -> tuple[bytes, int]:
    """Which bytes of a chunk at `offset` are new, given `received` bytes already stored for
    the run. Returns (bytes to append, new received count). Resent chunks append nothing."""
    end = offset + len(chunk)
    if end <= received:
        return b"", received
    if offset >= received:
        return chunk, end  # a gap (offset > received) means bytes were lost: keep what we got
    return chunk[received - offset :], end


# Heartbeat cadence of a whole worker process (POST /workers/sync), decided by the server.
SYNC_MIN = 0.5  # seconds: the fastest cadence the server asks for
SYNC_SOON = 1.0  # after a job was handed out or a kill ordered: confirm quickly
SYNC_LONG_RUN = 60.0  # a run this old is a long frame: its worker may beat less often
SYNC_KILL_BOUND = 4.0  # a running slot beats at least this often: pause -> kill within 5 s


def next_sync(
    asked: float,
    worker_timeout: float,
    *,
    handed: bool,
    kill: bool,
    running: int,
    shortest_run: float,
    spread: float = 0.0,
) -> float:
    """Seconds until a worker's next sync.

    `asked` is the worker's own cadence (`[worker] sleep`). Shorter right after a job was
    handed out or a kill ordered (the worker reports back soon); longer for an idle worker and
    for one whose runs are all long frames; never so long that the worker would look silent
    (`[server] timeout`), and never over SYNC_KILL_BOUND while a slot runs a job, so that a
    pause kills the job's process within about 5 seconds.

    `spread` is the cadence at which the farm's hosts bring the servers the sync rate they
    are set to take (`sync_spread`): a big farm's workers sync less often instead of
    saturating the server, as Nomad's heartbeat interval grows with its node count. The two
    bounds above still hold.
    """
    ceiling = max(SYNC_MIN, worker_timeout / 2.5)
    asked = max(SYNC_MIN, asked)
    if handed or kill:
        wanted = min(asked, SYNC_SOON)
    elif running == 0:
        wanted = max(asked * 2, spread)
    elif shortest_run >= SYNC_LONG_RUN:
        wanted = min(max(asked * 1.5, spread), SYNC_KILL_BOUND)
    else:
        wanted = min(max(asked, spread), SYNC_KILL_BOUND)
    return round(max(SYNC_MIN, min(wanted, ceiling)), 3)


# Held jobs (docs/protocol.md, "Held jobs"): a slot whose runs are short holds one job more,
# to start the moment its current run ends while that run's result travels to the server.
HOLD_BELOW = 1.0  # seconds: a slot asks to hold only after a run shorter than this
HOLD_MAX = 2.0  # seconds: a held job waiting longer (the run before it is long) goes back
HOLD_DEPTH = 8  # jobs a slot may hold at once (the server hands out at most this many)
HOLD_FIRST = 4  # what servers took before they said `hold_max`: asked until one says more
HOLD_WANTED = 8  # jobs our worker's slots hold: enough to start while results travel
REPORT_BATCH = 8  # results of short runs a slot sends in one endjob, when it holds jobs
REPORT_LINGER = 0.05  # seconds: the longest a result waits for others to go with it


def should_hold(last_run: float, packing: bool, draining: bool) -> bool:
    """Whether a slot asks for a job to hold: its last run took `last_run` seconds (its
    neighbour is probably as short: jobs of one group are alike), the host does not pack jobs
    by their needs (a held job's share is the slot's own) and the worker is not stopping.
    Long runs gain nothing from a held job and would only keep it from another slot. (A
    server that does not hand out held jobs ignores the ask.)"""
    return not packing and not draining and 0.0 <= last_run < HOLD_BELOW


def hold_wanted(server_max: int) -> int:
    """How many jobs our slot holds with a server that takes `hold` up to `server_max`."""
    return max(0, min(HOLD_WANTED, server_max))


def hold_count(asked: int, others_idle: bool) -> int:
    """How many jobs the server hands a slot to hold: what it asked, up to HOLD_DEPTH, but
    one at most while another host has a slot waiting for work (a queue of short jobs must
    not sit held on a few busy slots while others idle)."""
    return max(0, min(asked, HOLD_DEPTH, 1 if others_idle else HOLD_DEPTH))


def report_now(queued: int, held: int) -> bool:
    """Whether a slot that holds jobs sends its `queued` results now rather than wait for
    more to go in the same endjob: when a batch is full, or when the slot has no held job left
    to start (it needs the answer's)."""
    return queued >= REPORT_BATCH or held <= 0


def may_hold(picked: bool, next_job: Mapping[str, Any] | None) -> bool:
    """Whether the server hands out a job to hold after what this request picked: nothing
    when a pick found the queue empty (no second look), and nothing behind an exclusive job
    (it holds the whole host)."""
    if not picked:
        return True
    if next_job is None:
        return False
    need = next_job.get("need") or {}
    return not need.get("exclusive")


def held_expired(run_started: float, now: float) -> bool:
    """Whether a job held behind the run that started at `run_started` must go back to the
    queue (that run is long: another slot should have the job)."""
    return now - run_started >= HOLD_MAX


ALIGN_FROM = 2.0  # seconds: a cadence this long or longer is aligned to the host's phase


def host_phase(host: str) -> float:
    """Where in every sync cycle a worker process syncs, in [0, 1): a stable hash of its name,
    the same on every server (no state, nothing to share)."""
    return zlib.crc32(host.encode("utf-8", "replace")) / 2**32


def phase_aligned(interval: float, phase: float, now: float, ceiling: float) -> float:
    """`interval` moved to the host's own slot of the cycle: the time until the next instant
    t with t = phase * interval (mod interval), at least a quarter cycle away, and at most
    `ceiling` (the kill or silence bound; a capped answer is early, never late).

    Without it, hosts that synced together once (a server restart, every worker picking at
    once) keep syncing together: the worker's jitter spreads them over minutes, and
    meanwhile the server takes the whole farm's syncs in bursts (bench/heartbeats.py: its
    slow requests came 4 s apart, the running cadence). Aligned, each host returns to its
    slot after one answer, whatever the start; on average it still syncs every `interval`.
    `now` is the server's wall clock, so that several servers agree on the slots."""
    if interval < ALIGN_FROM:
        return interval
    slot = (phase * interval - now) % interval
    if slot < interval / 4:
        slot += interval
    return round(max(SYNC_MIN, min(slot, ceiling)), 3)


def sync_spread(hosts: int, rate: float) -> float:
    """The sync interval at which `hosts` worker processes make `rate` syncs a second in all
    (0: no rate set)."""
    return hosts / rate if rate > 0 else 0.0


# -- farm-wide limits (docs/scheduling.md) ----------------------------------------------------
def limit_amounts(text: str) -> dict[str, int]:
    """A job's canonical limit text ("arnold:2,nuke:1", as model.parse_limits writes it) as
    {name: amount}, in name order (the order the pick takes them in, so two servers never
    wait on each other's limit rows in opposite orders)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        name, _, amount = part.partition(":")
        if name:
            out[name] = out.get(name, 0) + int(amount or 1)
    return dict(sorted(out.items()))


def limit_room(capacity: int, in_use: int, external: int, amount: int) -> bool:
    """Whether `amount` more of a limit fits: what running jobs hold plus what its command
    counted outside the farm stays within its capacity."""
    return in_use + external + amount <= capacity


# -- frame-to-frame dependencies ----------------------------------------------------------------
def frame_span(first: int, last: int) -> tuple[int, int] | None:
    """The frames a job covers (inclusive), or None when it covers no known frame (its last
    frame before its first): such a job is taken to cover every frame."""
    return (first, last) if last >= first else None


def frames_overlap(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    """Whether two spans share a frame (an unknown span overlaps everything)."""
    if a is None or b is None:
        return True
    return a[0] <= b[1] and b[0] <= a[1]


# -- fair share ---------------------------------------------------------------------------------
def fair_share_order(
    running: Mapping[str, int],
    weights: Mapping[str, float],
    waiting: Iterable[str],
    default_weight: float = 1.0,
) -> list[str]:
    """The users with waiting work (at the same priority) in the order the next slot should
    serve them: fewest running slots per unit of weight first, ties by name.

    Served one slot at a time, this converges to shares proportional to the weights among the
    users who have work (a user with little work takes what it needs, the rest is shared by
    the others): a user who submits 10,000 frames does not starve one who submits 10.
    """

    def deficit(user: str) -> tuple[float, str]:
        weight = weights.get(user, default_weight)
        if weight <= 0:
            return (float("inf"), user)
        return (running.get(user, 0) / weight, user)

    return sorted(set(waiting), key=deficit)


def fair_shares(
    slots: int,
    queued: Mapping[str, int],
    weights: Mapping[str, float],
    default_weight: float = 1.0,
) -> dict[str, int]:
    """How many of `slots` each user gets when slots are handed out one by one in
    fair_share_order, each user taking at most what it has queued: the share a farm
    reaches at steady state (the bench's simulated farm checks the pick reaches it)."""
    running = dict.fromkeys(queued, 0)
    for _ in range(slots):
        waiting = [u for u, n in queued.items() if running[u] < n]
        order = fair_share_order(running, weights, waiting, default_weight)
        if not order or weights.get(order[0], default_weight) <= 0:
            break
        running[order[0]] += 1
    return running
