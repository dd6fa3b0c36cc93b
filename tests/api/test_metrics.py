"""GET /metrics: Prometheus's text format, parsed back with prometheus-client's own parser;
farm-wide gauges agree from every server on one database."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.worker.helpers import wait_state


def scrape(server: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    r = server.request("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].replace(" ", "").startswith("text/plain;version=0.0.4")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    return sum(v for k, v in samples.items() if set(labels.items()) <= set(k))


def test_metrics_after_real_runs(server: Any, make_worker: Any) -> None:
    make_worker(server.url, name="metricw")
    done = server.submit(command="true", title="ok")
    failed = server.submit(command="exit 3", title="bad", retry=0)
    waiting = server.submit(command="true", title="paused", paused=True)
    wait_state(server, done, "FINISHED")
    wait_state(server, failed, "ERROR")
    m = scrape(server)
    assert value(m["coalition_jobs"], state="FINISHED") == 1
    assert value(m["coalition_jobs"], state="ERROR") == 1
    assert value(m["coalition_jobs"], state="PAUSED") == 1 and server.job(waiting)["paused"]
    assert value(m["coalition_workers"]) == 1
    assert value(m["coalition_dispatches_total"]) >= 2
    # The worker's syncs and endjobs were timed, per route, labelled with this server.
    counts = m["coalition_worker_request_seconds_count"]
    assert value(counts, route="sync") >= 1 and value(counts, route="endjob") >= 2
    assert all(dict(k)["server"].endswith(f":{server.port}") for k in counts)
    runs = m["coalition_run_seconds_count"]
    assert value(runs, outcome="finished") == 1 and value(runs, outcome="error") == 1
    assert value(m["coalition_db_transactions_total"], kind="write") > 0
    assert value(m["coalition_db_seconds_total"], kind="read") > 0
    assert value(m["coalition_autoscaler_decisions_last_hour"]) == 0  # not in cloud mode


def test_metrics_need_the_same_access_as_the_api(make_server: Any) -> None:
    # An unknown method is a clear JSON 405, not a traceback.
    server = make_server()
    r = server.request("POST", "/metrics")
    assert r.status_code == 405 and "not allowed" in r.json()["error"], (r.status_code, r.text[:300])


@pytest.mark.mysql
def test_farm_wide_gauges_agree_from_both_servers(make_server: Any, mariadb: Any) -> None:
    db = mariadb.server_keys()
    first = make_server(start=False, **db)
    first.init_database()
    first.start()
    second = make_server(**db)
    first.api("PUT", "/api/jobs", [{"title": f"j{i}", "command": "true"} for i in range(7)])
    second.worker_call("pickjob", {"name": "on-second"})
    a, b = scrape(first), scrape(second)
    for m in (a, b):
        assert value(m["coalition_jobs"], state="WAITING") == 6
        assert value(m["coalition_jobs"], state="WORKING") == 1
        assert value(m["coalition_workers"]) == 1
    # Per-process counters: only the server that handed the job out counted it.
    assert value(b["coalition_dispatches_total"]) == 1
    assert value(a.get("coalition_dispatches_total", {})) == 0


def test_the_example_dashboard_asks_only_for_metrics_the_server_exports(server: Any) -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {name for e in exprs for name in re.findall(r"\b(coalition_[a-z_]+)", e)}
    text = server.request("GET", "/metrics").text
    families = {f.name for f in text_string_to_metric_families(text)}
    exported = (
        families
        | {f"{n}_total" for n in families}
        | {f"{n}_{s}" for n in families for s in ("bucket", "count", "sum")}
    )
    assert asked and asked <= exported, asked - exported
