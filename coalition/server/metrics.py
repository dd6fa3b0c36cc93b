"""Prometheus metrics at GET /metrics, in the text exposition format (version 0.0.4).

Three kinds of figures, so that several servers on one database agree:

* farm-wide gauges (jobs by state, workers by state) are read from the database at each
  scrape: any server answers the same;
* per-process counters and histograms (dispatches, worker-protocol request time, pick
  time, run durations, database time) count what this process did, labelled `server="host:port"`;
  sum them over servers in the query;
* the cloud instances the autoscaler saw: one server runs it (its lease), so that server
  alone reports them, labelled like the counters, and only while its last pass is recent.

The format is small enough to write by hand, which keeps prometheus-client out of the
server's dependencies (the tests parse the output with prometheus-client's own parser).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A pick is a few indexed reads and one claim inside a transaction: well under a millisecond
# on an idle SQLite farm, tens of milliseconds when a large farm's queue is contended.
PICK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
RUN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())
    return "{" + text + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonic count per label set."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add `amount` (>= 0) for these labels."""
        key = tuple(labels.get(n, "") for n in self.label_names)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def lines(self, base: Mapping[str, str]) -> list[str]:
        """Its exposition lines."""
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            labels = {**base, **dict(zip(self.label_names, key, strict=True))}
            out.append(f"{self.name}_total{_labels(labels)} {_number(value)}")
        return out


class Histogram:
    """Observations in cumulative buckets, with their sum and count, per label set."""

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], label_names: Sequence[str] = ()
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self._values: dict[tuple[str, ...], list[float]] = {}  # per bucket, then +Inf, sum
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        """Count one observation."""
        key = tuple(labels.get(n, "") for n in self.label_names)
        with self._lock:
            cells = self._values.setdefault(key, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    cells[i] += 1
            cells[-2] += 1
            cells[-1] += value

    def lines(self, base: Mapping[str, str]) -> list[str]:
        """Its exposition lines."""
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._values.items())
        for key, cells in items:
            labels = {**base, **dict(zip(self.label_names, key, strict=True))}
            for bound, count in zip(self.buckets, cells, strict=False):
                out.append(f"{self.name}_bucket{_labels({**labels, 'le': _number(bound)})} {_number(count)}")
            out.append(f"{self.name}_bucket{_labels({**labels, 'le': '+Inf'})} {_number(cells[-2])}")
            out.append(f"{self.name}_sum{_labels(labels)} {_number(cells[-1])}")
            out.append(f"{self.name}_count{_labels(labels)} {_number(cells[-2])}")
        return out


class ServerMetrics:
    """This process's counters, and the farm-wide gauges read at each scrape."""

    def __init__(
        self,
        server: str,
        farm: Callable[[], Mapping[str, Mapping[str, int]]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self._farm = farm  # () -> {"jobs": {state: n}, "workers": {state: n}}
        self._clock = clock
        # The cloud instances this server's autoscaler saw: (until when it holds, {state: n}).
        self._cloud: tuple[float, dict[str, int]] | None = None
        self.dispatches = Counter("coalition_dispatches", "Jobs handed to worker slots by this server")
        self.requests = Histogram(
            "coalition_worker_request_seconds",
            "Time to answer a worker-protocol request, by route",
            LATENCY_BUCKETS,
            ("route",),
        )
        self.picks = Histogram(
            "coalition_pick_seconds",
            "Time to choose and claim a job for a worker slot (the pick alone, in whichever "
            "request), by outcome: job or none",
            PICK_BUCKETS,
            ("outcome",),
        )
        self.runs = Histogram(
            "coalition_run_seconds", "Wall time of the runs reported to this server, by outcome", RUN_BUCKETS,
            ("outcome",),
        )  # fmt: skip
        self.db = Counter("coalition_db_seconds", "Time spent in database transactions, by kind", ("kind",))
        self.db_transactions = Counter(
            "coalition_db_transactions", "Database transactions, by kind", ("kind",)
        )
        # The HTTP server's threads ({"busy": n, "idle": n}) and the connections its read
        # deadlines cut ({"headers": n, "body": n}): set once the server runs (guard.py).
        self.http_threads: Callable[[], Mapping[str, int]] | None = None
        self.http_cut: Callable[[], Mapping[str, int]] | None = None

    def cloud_instances(self, by_state: Mapping[str, int], fresh_for: float) -> None:
        """The autoscaler (on the server holding its lease) saw these instances; shown for
        `fresh_for` s, so that a server that lost the lease stops reporting them."""
        self._cloud = (self._clock() + fresh_for, dict(by_state))

    def picked(self, seconds: float, handed: bool) -> None:
        """A committed pick took `seconds` (hooked into the use-case context)."""
        self.picks.observe(seconds, outcome="job" if handed else "none")

    def db_time(self, kind: str, seconds: float) -> None:
        """A database transaction took `seconds` (hooked into the use-case context)."""
        self.db.inc(seconds, kind=kind)
        self.db_transactions.inc(kind=kind)

    def render(self) -> str:
        """The whole exposition text."""
        base = {"server": self.server}
        farm = self._farm()
        lines: list[str] = []
        lines += _gauge("coalition_jobs", "Jobs (leaves) by state, farm-wide", "state", farm.get("jobs", {}))
        lines += _gauge(
            "coalition_workers", "Worker slots by state, farm-wide", "state", farm.get("workers", {})
        )
        decisions = farm.get("autoscaler", {}).get("hour", 0)
        lines += [
            "# HELP coalition_autoscaler_decisions_last_hour The cloud autoscaler's decisions, last hour",
            "# TYPE coalition_autoscaler_decisions_last_hour gauge",
            f"coalition_autoscaler_decisions_last_hour {_number(decisions)}",
        ]
        cloud = self._cloud
        seen = cloud[1] if cloud is not None and self._clock() <= cloud[0] else {}
        lines += _gauge(
            "coalition_autoscaler_instances",
            "Cloud instances (and open spot requests) the autoscaler saw at its last pass, by "
            "state; only from the server running the autoscaler, none outside cloud mode",
            "state",
            seen,
            base,
        )
        limits = farm.get("limits", {})
        for kind, what in (("capacity", "licences or slots"), ("in_use", "taken by running jobs"),
                           ("external", "used outside the farm")):  # fmt: skip
            values = {k.split(":", 1)[1]: v for k, v in limits.items() if k.startswith(kind + ":")}
            lines += _gauge(f"coalition_limit_{kind}", f"Named limits: {what}, farm-wide", "limit", values)
        for metric in (self.dispatches, self.requests, self.picks, self.runs, self.db, self.db_transactions):
            lines += metric.lines(base)
        if self.http_threads is not None:
            what = "HTTP server threads of this process: busy (reading or answering a request), idle"
            lines += _gauge("coalition_http_threads", what, "state", self.http_threads(), base)
        if self.http_cut is not None:
            name = "coalition_http_cut"
            lines += [
                f"# HELP {name} Connections cut for sending their headers or body too slowly",
                f"# TYPE {name} counter",
            ]
            for late, count in sorted(self.http_cut().items()):
                lines.append(f"{name}_total{_labels({**base, 'late': late})} {_number(count)}")
        return "\n".join(lines) + "\n"


def _gauge(
    name: str, help_text: str, label: str, values: Mapping[str, int], base: Mapping[str, str] | None = None
) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    out += [f"{name}{_labels({**(base or {}), label: k})} {_number(v)}" for k, v in sorted(values.items())]
    return out
