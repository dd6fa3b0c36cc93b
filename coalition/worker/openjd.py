"""Running Open Job Description tasks on a slot, with openjd-sessions (docs/openjd.md).

A slot keeps one OpenJD *session* between tasks, as the specification intends: the job's
environments are entered when its first task arrives, a step's environments when the first
task of that step does, and the next tasks of the step run in the same session (a renderer or
a Python venv set up once per slot, not once per frame). The session is closed (its
environments exited in reverse order, its working directory deleted) when the slot is given
a task of another job or a plain job, when it stays idle `openjd_linger` seconds, when the
worker stops, and after a failed or cancelled action (the specification lets a session only
exit its environments then). A task of another step of the same job exits the previous
step's environments and enters the new one's.

Output: openjd-sessions logs its actions' output and its own banners to its `LOG` logger,
tagged with the session's id; `LogRouter` hands each line to the run the session works for.
Environment exits that belong to no run (an idle slot closing its session) go to the worker's
own log, and so does the closing of another job's session (its output is not this job's).

A `TaskRun` looks like worker/process.py's JobProcess to the slot's supervision loop, so
Coalition's kills (pause, reset, delete, worker stopped), timeouts, stalls and hand-backs
work unchanged: `terminate()` cancels the running action the way its template says
(`cancelation`: TERMINATE at once, or NOTIFY_THEN_TERMINATE after `notifyPeriodInSeconds`),
then the environments the session entered are exited; the slot's SIGKILL stage (`kill_due`,
later than the template's notify period) ends whatever still runs at once.

stdout messages: `openjd_progress` lines are the run's output, which the server reads with
the task's progress pattern; `openjd_status` lines stay in the log (Coalition has no status
field); `openjd_fail` becomes the run's failure reason; `openjd_env` is the session's.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from openjd.model import ParameterValue, ParameterValueType, RevisionExtensions, SpecificationRevision
from openjd.sessions import LOG, ActionState, ActionStatus, PathMappingRule, Session, SessionState

from coalition.model import parse_env
from coalition.openjd import pathmap, template
from coalition.openjd.plan import TaskRef, parse_task_ref

from .spool import RunLog
from .usage import Usage

log = logging.getLogger("coalition.worker")

KILL_MARGIN = 60.0  # seconds past the template's notify period before the slot kills outright
DEFAULT_NOTIFY = 120  # the specification's notifyPeriodInSeconds default for a task's onRun


class TaskError(Exception):
    """A task that cannot start (its job is gone, its template does not instantiate)."""


# -- output ----------------------------------------------------------------------------------
Sink = Callable[[str], None]


class LogRouter(logging.Handler):
    """openjd-sessions' log lines, each to the sink of its session (one per slot)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._sinks: dict[str, Sink] = {}
        self._lock = threading.Lock()

    def route(self, session_id: str, sink: Sink | None) -> None:
        """Send `session_id`'s lines to `sink` from now on (None: stop)."""
        with self._lock:
            if sink is None:
                self._sinks.pop(session_id, None)
            else:
                self._sinks[session_id] = sink

    def emit(self, record: logging.LogRecord) -> None:
        """Hand one line to its session's sink (lines of no known session: the worker log)."""
        with self._lock:
            sink = self._sinks.get(str(getattr(record, "session_id", "")))
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        if sink is not None:
            sink(text)
        else:
            log.debug("openjd: %s", text)


_ROUTER: LogRouter | None = None
_ROUTER_LOCK = threading.Lock()


def router() -> LogRouter:
    """The process's LogRouter, installed on openjd-sessions' logger on first use; the
    logger no longer propagates, or every job's output would fill the worker's own log."""
    global _ROUTER
    with _ROUTER_LOCK:
        if _ROUTER is None:
            _ROUTER = LogRouter()
            LOG.addHandler(_ROUTER)
            LOG.setLevel(logging.INFO)
            LOG.propagate = False
        return _ROUTER


def worker_log_sink(slot: str) -> Sink:
    """Session output that belongs to no run: the worker's log."""
    return lambda text: log.info("%s: openjd: %s", slot, text)


def run_sink(output: RunLog) -> Sink:
    """Session output into a run's log, one line at a time."""
    return lambda text: output.write((text + "\n").encode("utf-8", "replace"))


# -- jobs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedJob:
    """An OpenJD job instantiated on this worker from its stored template and values."""

    job_id: int
    job: Any  # openjd.model Job
    tables: Mapping[str, Any]  # step name -> its resolved symbol table
    values: Mapping[str, ParameterValue]
    extensions: tuple[str, ...]

    def step(self, name: str) -> Any:
        """The job's step of that name (TaskError if it has none)."""
        for step in self.job.steps:
            if step.name == name:
                return step
        raise TaskError(f"the OpenJD job {self.job_id} has no step {name!r}")


class JobCache:
    """The last few OpenJD jobs this worker ran tasks of (shared by its slots): a task of a
    known job needs no fetch and no new instantiation."""

    SIZE = 8

    def __init__(self) -> None:
        self._jobs: OrderedDict[int, LoadedJob] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: int, fetch: Callable[[int], Mapping[str, Any]]) -> LoadedJob:
        """The job, fetched (`fetch(job_id)`: the server's {template, parameters}) if new."""
        with self._lock:
            found = self._jobs.get(job_id)
            if found is not None:
                self._jobs.move_to_end(job_id)
                return found
        data = fetch(job_id)
        try:
            values = template.values_from_json(data["parameters"])
            made = template.instantiate(data["template"], values)
        except Exception as exc:  # noqa: BLE001 - any model error: this task cannot start
            raise TaskError(f"the OpenJD job {job_id} does not instantiate here: {exc}") from None
        extensions = tuple(str(e) for e in (data["template"].get("extensions") or ()))
        loaded = LoadedJob(job_id, made.job, dict(made.step_symbol_tables), values, extensions)
        with self._lock:
            self._jobs[job_id] = loaded
            while len(self._jobs) > self.SIZE:
                self._jobs.popitem(last=False)
        return loaded


JOBS = JobCache()


def task_values(ref: TaskRef) -> dict[str, ParameterValue]:
    """A task's parameter values as openjd-sessions takes them."""
    return {
        name: ParameterValue(type=ParameterValueType(kind), value=value)
        for name, (kind, value) in ref.params.items()
    }


# -- sessions ----------------------------------------------------------------------------------
_SESSIONS = itertools.count(1)


class SlotSession:
    """The OpenJD session one slot keeps between tasks, and how it starts each task.

    Used by the slot's thread, and by one TaskRun's driver thread at a time while the slot
    thread waits for that run (never both at once)."""

    def __init__(
        self,
        slot: str,
        fetch: Callable[[int], Mapping[str, Any]],
        rules: tuple[pathmap.Rule, ...] = (),
        linger: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slot = slot
        self.fetch = fetch
        self.rules = [PathMappingRule.from_dict(r) for r in pathmap.as_dicts(rules)]
        self.linger = linger
        self.clock = clock
        self.session: Session | None = None
        self.session_id = ""
        self.job: LoadedJob | None = None
        self.step = ""  # the step whose environments are entered ("" : none)
        self.entered: list[tuple[str, str, Any]] = []  # (kind, identifier, symbol table)
        self.idle_since = 0.0
        self._action_done = threading.Event()

    # -- opening and closing ---------------------------------------------------------------
    def _callback(self, session_id: str, status: ActionStatus) -> None:
        if status.state != ActionState.RUNNING:
            self._action_done.set()

    def _open(self, job: LoadedJob, sink: Sink) -> None:
        self.session_id = f"{self.slot}-{job.job_id}-{next(_SESSIONS)}"
        router().route(self.session_id, sink)
        self.session = Session(
            session_id=self.session_id,
            job_parameter_values=dict(job.values),
            job_name=str(job.job.name),
            path_mapping_rules=self.rules or None,
            callback=self._callback,
            revision_extensions=RevisionExtensions(
                spec_rev=SpecificationRevision.v2023_09, supported_extensions=list(job.extensions)
            ),
        )
        self.job, self.step, self.entered = job, "", []

    def close(self, sink: Sink | None = None, run: TaskRun | None = None) -> None:
        """Exit every environment entered (reverse order) and end the session; its output
        goes to `sink` (default: the worker's log)."""
        session = self.session
        if session is None:
            return
        router().route(self.session_id, sink or worker_log_sink(self.slot))
        try:
            self._exit(len(self.entered), run, keep_running=False)
        finally:
            try:
                session.cleanup()
            finally:
                router().route(self.session_id, None)
                self.session, self.job, self.step, self.entered = None, None, "", []

    def _exit(self, count: int, run: TaskRun | None, keep_running: bool) -> bool:
        """Exit the last `count` environments entered; False if one failed."""
        ok = True
        session = self.session
        assert session is not None
        for _ in range(count):
            kind, identifier, table = self.entered.pop()
            if run is not None and run.forced:
                continue  # killed outright: no more actions
            status = self._act(
                partial(
                    session.exit_environment,
                    identifier=identifier,
                    keep_session_running=keep_running,
                    resolved_symtab=table,
                ),
                run,
                cleanup=True,
            )
            ok = ok and status is not None and status.state == ActionState.SUCCESS
        return ok

    def idle(self, now: float) -> None:
        """Close the session of a slot idle for `linger` seconds (called by the idle slot)."""
        if self.session is not None and now - self.idle_since >= self.linger:
            log.info(
                "%s: closing the OpenJD session of job %s (idle)", self.slot, self.job and self.job.job_id
            )
            self.close()

    # -- actions -----------------------------------------------------------------------------
    def _act(
        self, start: Callable[[], Any], run: TaskRun | None, cleanup: bool = False
    ) -> ActionStatus | None:
        """Start one action and wait for its end; None if it could not start. A cancelled
        run starts no action but its environments' exits (`cleanup`), a killed one none."""
        session = self.session
        assert session is not None
        self._action_done.clear()
        lock = run.lock if run is not None else threading.Lock()
        with lock:
            if run is not None and (run.forced or (run.cancelled and not cleanup)):
                return None
            if run is not None:
                run.session = session  # what its cancellation cancels
            try:
                start()
            except (RuntimeError, ValueError) as exc:
                router_sink = run.sink if run is not None else worker_log_sink(self.slot)
                router_sink(f"[coalition] the action could not start: {exc}")
                return None
        while not self._action_done.wait(1.0):
            if session.state != SessionState.RUNNING:
                break  # ended without a callback (defensive: the library always calls back)
        return session.action_status

    def run_task(self, run: TaskRun) -> None:
        """Driver of one task (a TaskRun's thread): make the session right for the task's job
        and step, run the task, and close the session if the task did not succeed."""
        job, ref = run.loaded, run.ref
        if self.session is not None and self.job is not None and self.job.job_id != job.job_id:
            self.close()  # another job's session: its exits go to the worker's log
        if self.session is not None and self.session.state != SessionState.READY:
            self.close(run.sink, run)
        step = job.step(ref.step)
        if self.session is not None and self.step and self.step != ref.step:
            # Another step of the same job: exit its environments, keep the job's.
            step_envs = sum(1 for kind, _, _ in self.entered if kind == "step")
            router().route(self.session_id, run.sink)
            if not self._exit(step_envs, run, keep_running=True) or self.session.state != SessionState.READY:
                self.close(run.sink, run)
            self.step = ""
        if self.session is None:
            self._open(job, run.sink)
            if not self._enter(job.job.jobEnvironments or (), "job", None, None, run):
                return self._fail(run)
        router().route(self.session_id, run.sink)
        if self.step != ref.step:
            table = job.tables.get(step.name)
            if not self._enter(step.stepEnvironments or (), "step", table, step.name, run):
                return self._fail(run)
            self.step = ref.step
        session = self.session
        assert session is not None
        env = run.os_env
        status = self._act(
            lambda: session.run_task(
                step_script=step.script,
                task_parameter_values=task_values(ref),
                os_env_vars=env,
                step_name=step.name,
                resolved_symtab=job.tables.get(step.name),
            ),
            run,
        )
        run.status = status
        if status is None or status.state != ActionState.SUCCESS:
            self._fail(run)

    def _enter(self, envs: Any, kind: str, table: Any, step_name: str | None, run: TaskRun) -> bool:
        session = self.session
        assert session is not None
        for env in envs:
            identifier = f"{kind} {env.name}"
            self.entered.append((kind, identifier, table))
            # step_name only for a step's environments (it seeds Step.Name under EXPR).
            extra: dict[str, Any] = {"step_name": step_name} if step_name is not None else {}
            enter = partial(
                session.enter_environment,
                environment=env,
                identifier=identifier,
                os_env_vars=run.os_env,
                resolved_symtab=table,
                **extra,
            )
            status = self._act(enter, run)
            if identifier not in session.environments_entered:
                self.entered.pop()  # refused before it was registered: nothing to exit
            if status is None or status.state != ActionState.SUCCESS:
                run.status = status
                run.failed_env = env.name
                return False
        return True

    def _fail(self, run: TaskRun) -> None:
        # A failed or cancelled action leaves a session that may only exit its environments.
        self.close(run.sink, run)


# -- a task as the slot sees it ------------------------------------------------------------------
class _NoMeter:
    """The slot samples a JobProcess's memory; a session's processes are not ours to walk."""

    next_sample = float("inf")

    def sample(self, now: float) -> None:
        """Nothing to sample."""


class TaskRun:
    """One OpenJD task running in its slot's session, shaped like worker/process.JobProcess
    for the slot's supervision loop (pump, returncode, terminate, kill_due, signal...)."""

    def __init__(
        self,
        owner: SlotSession,
        loaded: LoadedJob,
        ref: TaskRef,
        output: RunLog,
        os_env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner = owner
        self.loaded = loaded
        self.ref = ref
        self.output = output
        self.sink = run_sink(output)
        self.os_env = dict(os_env)
        self.clock = clock
        self.started = clock()
        self.meter = _NoMeter()
        self.lock = threading.Lock()  # starting an action vs cancelling
        self.cancelled = False
        self.forced = False
        self.status: ActionStatus | None = None
        self.failed_env = ""
        self.session: Session | None = None  # the session of the action it runs (set by _act)
        self._term_at: float | None = None
        self._code: int | None = None
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._thread = threading.Thread(target=self._drive, name=f"{owner.slot}-openjd", daemon=True)
        self._thread.start()

    def _drive(self) -> None:
        try:
            self.owner.run_task(self)
        except Exception as exc:  # noqa: BLE001 - a driver must always end the run
            log.exception("%s: OpenJD task failed in the worker", self.owner.slot)
            self.sink(f"[coalition] the OpenJD session failed: {exc}")
        finally:
            if self.owner.session is not None:  # between tasks, stray lines go to the worker log
                router().route(self.owner.session_id, worker_log_sink(self.owner.slot))
            self._code = self._exit_code()
            self.owner.idle_since = self.clock()
            os.write(self._write, b"!")

    def _exit_code(self) -> int:
        status = self.status
        if status is not None and status.state == ActionState.SUCCESS and not self.failed_env:
            return 0
        if self.cancelled or (status is not None and status.state == ActionState.CANCELED):
            return -int(signal.SIGKILL if self.forced else signal.SIGTERM)
        if status is not None and status.exit_code not in (None, 0):
            return int(status.exit_code)
        return 1

    @property
    def reason(self) -> str:
        """Why the run failed, from the session's point of view ("" when it did not, or when
        the exit code says it all)."""
        status = self.status
        if self.cancelled or status is None:
            return "" if self.cancelled else "the OpenJD session could not run the task"
        if status.state == ActionState.SUCCESS and not self.failed_env:
            return ""
        if status.fail_message:
            return f"openjd_fail: {status.fail_message}"
        if status.state == ActionState.TIMEOUT:
            return "timeout (the OpenJD action's own)"
        if self.failed_env:
            code = f"exit code {status.exit_code}" if status.exit_code is not None else "it failed"
            return f"environment {self.failed_env} could not be entered ({code})"
        return ""

    # -- the JobProcess face ---------------------------------------------------------------
    @property
    def returncode(self) -> int | None:
        """0 when the task succeeded, its action's exit code, -15 cancelled; None running."""
        return self._code

    def pump(self, timeout: float, wake: int | None = None) -> None:
        """Wait up to `timeout` seconds for the run's end or a byte on `wake` (output goes
        straight into the run's log from the session's reader threads)."""
        fds = [self._read] + ([wake] if wake is not None else [])
        try:
            select.select(fds, [], [], max(0.0, timeout))
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            pass
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def terminate(self, now: float) -> None:
        """Cancel the run: the running action as its template says, then the environments
        are exited (by the driver)."""
        if self._term_at is not None:
            return
        self._term_at = now
        with self.lock:
            self.cancelled = True
            self._cancel(None)

    def _cancel(self, limit: timedelta | None) -> None:
        # This run's own actions only: not the exits of another job's session it closes first.
        session = self.session
        if session is not None and session.state == SessionState.RUNNING:
            try:
                session.cancel_action(time_limit=limit)
            except RuntimeError:
                pass  # it ended meanwhile

    @property
    def terminating(self) -> bool:
        """Whether terminate() was called."""
        return self._term_at is not None

    def kill_due(self, grace: float) -> float | None:
        """When the slot's SIGKILL stage comes: after the template's notify period, so that a
        NOTIFY_THEN_TERMINATE action gets the time it asked for, and its exits some more."""
        if self._term_at is None:
            return None
        return self._term_at + max(grace, self._notify_period() + KILL_MARGIN)

    def _notify_period(self) -> float:
        try:
            cancel = self.loaded.step(self.ref.step).script.actions.onRun.cancelation
            period = getattr(cancel, "notifyPeriodInSeconds", None)
            if getattr(cancel, "mode", None) is not None and "NOTIFY" in str(cancel.mode):
                return float(period) if period is not None else float(DEFAULT_NOTIFY)
        except (AttributeError, TypeError, ValueError, TaskError):
            pass
        return 0.0

    def signal(self, signum: int) -> None:
        """SIGKILL: end whatever action runs now, and run no other (the slot's last resort)."""
        if signum == signal.SIGKILL:
            with self.lock:
                self.forced = self.cancelled = True
                self._cancel(timedelta(0))

    def reap_group(self, grace: float, clock: Callable[[], float] = time.monotonic) -> bool:
        """The session ends its own processes; wait for the driver to be done."""
        self._thread.join(timeout=max(1.0, grace))
        return False

    def close(self) -> None:
        """Release the wake-up pipe."""
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass

    def usage(self) -> Usage:
        """The run's wall time (its processes' CPU and memory are the session's, not measured)."""
        return Usage(max(0.0, self.clock() - self.started), 0.0, 0)


def start_task(
    owner: SlotSession, job: Mapping[str, Any], output: RunLog, extra_env: Mapping[str, str]
) -> TaskRun:
    """Start an OpenJD task (a picked job whose `openjd` field is set) in the slot's session.

    Raises TaskError when it cannot start (malformed field, job gone, template that does not
    instantiate); the fetch's own errors (server unreachable) pass through."""
    ref = parse_task_ref(str(job.get("openjd") or ""))
    if ref is None:
        raise TaskError("its openjd field is not a task reference")
    loaded = JOBS.get(ref.job, owner.fetch)
    loaded.step(ref.step)  # a step the job lacks: a TaskError now, not in the driver
    env = {**parse_env(str(job.get("environment") or "")), **extra_env}
    return TaskRun(owner, loaded, ref, output, env, owner.clock)
