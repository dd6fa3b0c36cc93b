"""GET /metrics: Prometheus's text format, parsed back with prometheus-client's own parser;
farm-wide gauges agree from every server on one database."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scrape import scrape, value
from tests.worker.helpers import wait_state


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
    assert "coalition_autoscaler_instances" not in m  # no autoscaler here: no instances told


def test_the_pick_alone_is_timed_wherever_a_pick_happens(server: Any) -> None:
    def picks() -> tuple[float, float]:
        counts = scrape(server).get("coalition_pick_seconds_count", {})
        return value(counts, outcome="job"), value(counts, outcome="none")

    assert picks() == (0, 0)
    assert server.worker_call("pickjob", {"name": "p1"})["job"] is None  # an empty queue
    assert picks() == (0, 1)
    first, second, third = (server.submit(command="true", title=f"j{i}") for i in range(3))
    job = server.worker_call("pickjob", {"name": "p1"})["job"]
    assert job["id"] == first and picks() == (1, 1)
    end = {"name": "p1", "job_id": first, "event": job["event"], "exit_code": 0, "pick": True}
    job = server.worker_call("endjob", end)["job"]
    assert job["id"] == second and picks() == (2, 1)
    sync = server.worker_call("sync", {"slots": [{"name": "p2", "pick": True}]})
    assert sync["slots"][0]["job"]["id"] == third and picks() == (3, 1)
    # A sync or an endjob that asks for no job picks nothing.
    server.worker_call(
        "sync", {"slots": [{"name": "p2", "job_id": third, "event": sync["slots"][0]["job"]["event"]}]}
    )
    server.worker_call("endjob", {"name": "p1", "job_id": second, "event": job["event"], "exit_code": 0})
    assert picks() == (3, 1)
    m = scrape(server)
    # The pick alone: a part of the requests that carried it, never the whole.
    picked = value(m["coalition_pick_seconds_sum"])
    requests = value(m["coalition_worker_request_seconds_sum"])
    assert 0 < picked < requests
    buckets = m["coalition_pick_seconds_bucket"]
    assert value(buckets, outcome="job", le="+Inf") == 3
    assert all(dict(k)["server"].endswith(f":{server.port}") for k in buckets)


def test_autoscaler_instances_are_told_while_its_last_pass_is_recent() -> None:
    from coalition.server.metrics import ServerMetrics

    now = [1000.0]
    metrics = ServerMetrics("render-srv:19211", lambda: {}, clock=lambda: now[0])

    def seen() -> dict[str, float]:
        families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
        assert "coalition_autoscaler_instances" in families  # described even when empty
        return {s.labels["state"]: s.value for s in families["coalition_autoscaler_instances"].samples}

    assert seen() == {}  # no autoscaler pass in this process
    metrics.cloud_instances({"pending": 1, "running": 2, "stopping": 0, "stopped": 0, "gone": 3}, 50.0)
    assert seen() == {"pending": 1, "running": 2, "stopping": 0, "stopped": 0, "gone": 3}
    now[0] += 50
    assert seen()["running"] == 2
    now[0] += 1  # the lease may have moved to another server, which reports them now
    assert seen() == {}


def test_metrics_need_the_same_access_as_the_api(ldap_farm: Any) -> None:
    """docs/metrics.md: with LDAP on, a scraper needs a user that may view, as the API's reads do."""
    farm = ldap_farm
    cases = {
        "anonymous": (farm.client(), 401),
        "a wrong password": (farm.client("admin1", "not-it"), 401),
        "a user in no group": (farm.client("nobody1"), 403),  # may log in, may view nothing
        "an artist": (farm.client("artist1"), 200),  # views its own jobs: may read the figures
        "an administrator": (farm.client("admin1"), 200),
    }
    for who, (client, status) in cases.items():
        r = client.get(farm.url + "/metrics", timeout=30)
        api = client.get(farm.url + "/api/jobs", timeout=30)
        assert (r.status_code, api.status_code) == (status, status), (who, r.text[:300])
        if status == 200:
            families = {f.name for f in text_string_to_metric_families(r.text)}
            assert {"coalition_jobs", "coalition_workers", "coalition_pick_seconds"} <= families, who
        else:
            assert r.json()["error"], who  # a JSON reason, as every refusal
    # An unknown method is a clear JSON 405, not a traceback.
    r = farm.client("admin1").post(farm.url + "/metrics", timeout=30)
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
