"""End to end: the real server process in `servermode = aws` against moto_server.

A queued job makes the autoscaler request a spot instance; the test plays that instance by
starting a local worker under its name; the job finishes; past the minimum lifetime the
instance is terminated and its spot request cancelled. Then a spot interruption: the worker
gets the notice from a fake instance-metadata service, hands its job back (requeued, no retry
spent), the instance vanishes, and the autoscaler requests a replacement that finishes the job.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cloud.conftest import AMI, REGION, write_ini
from tests.conftest import free_port
from tests.scrape import scrape, value
from tests.support import require, wait_for

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[str]:
    """A moto_server process on a free loopback port; its URL."""
    try:
        import flask  # noqa: F401 - moto[server] needs it
        import moto.server  # noqa: F401
    except ImportError:
        require(False, "moto_server is not installed: pip install 'moto[server]'")
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **FAKE_ENV},
    )
    log.close()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "moto.log").read_text()
        try:
            return requests.get(url + "/moto-api/", timeout=1).status_code < 500
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=30, interval=0.05, what="moto_server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class FakeImds:
    """Just enough IMDSv2 for the worker's spot watcher: a token, then a notice on demand."""

    def __init__(self) -> None:
        self.notice = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                self._send(200, "token") if self.path == "/latest/api/token" else self._send(404, "")

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/latest/meta-data/spot/instance-action" and outer.notice:
                    self._send(200, json.dumps({"action": "terminate", "time": "2030-01-01T00:00:00Z"}))
                elif self.path == "/latest/meta-data/instance-id":
                    self._send(200, "i-local")
                else:
                    self._send(404, "")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Any]:
    """start(name, server_url, **[worker] keys): a local worker process playing an instance."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, url: str, **keys: Any) -> subprocess.Popen[bytes]:
        root = tmp_path / f"worker-{name}"
        root.mkdir()
        settings = {"name": name, "sleep": 0.2, "interruptions": "off", "killgrace": 2, **keys}
        (root / "worker.ini").write_text("[worker]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        with open(root / "worker.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coalition.worker.main", "-c", str(root / "worker.ini"), url],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cloud_server(make_server: Any, moto_server: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """A coalition server in aws mode whose autoscaler talks to moto_server; and an EC2 client."""
    import boto3

    for key, setting in FAKE_ENV.items():
        monkeypatch.setenv(key, setting)
    monkeypatch.setenv("COALITION_CLOUD_ENDPOINT", moto_server)
    monkeypatch.setenv("COALITION_AUTOSCALE_INTERVAL", "0.3")
    # verbose 0: the log level of a production server, where decisions must still be logged.
    server = make_server(start=False, servermode="aws", workertoken="e2e-token", verbose=0)
    write_ini(
        server.root,
        "aws",
        {
            "authentication": {"region": REGION},
            "storage": {"name": "coalition-e2e"},
            "coalition": {
                "ip": "127.0.0.1",
                "port": str(server.port),
                "workerinstancemax": "2",
                "workerinstancestartdelay": "0",
                "workerinstanceminimumlifetime": "1",
                "workerinstanceboottimeout": "120",
            },
            "worker": {"imageid": AMI, "instancetype": "t3.micro", "spotmethod": "request-spot-instances"},
        },
    )
    server.start()
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_server)
    return server, ec2


def live_requests(ec2: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
        if r["State"] in ("open", "active")
    ]


def instance_state(ec2: Any, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"][
        "Name"
    ]


def name_of(request: dict[str, Any]) -> str:
    return next(t["Value"] for t in request["Tags"] if t["Key"] == "Name")


def worker_row(server: Any, name: str) -> dict[str, Any] | None:
    return next((w for w in server.api("GET", "/api/workers") if w["name"] == name), None)


def instances_seen(server: Any) -> dict[str, float]:
    """coalition_autoscaler_instances of the server's /metrics: {state: n}."""
    samples = scrape(server).get("coalition_autoscaler_instances", {})
    assert all(dict(k)["server"].endswith(f":{server.port}") for k in samples), samples
    return {dict(k)["state"]: v for k, v in samples.items()}


def test_a_job_starts_a_spot_worker_that_is_terminated_when_idle(cloud_server: Any, workers: Any) -> None:
    server, ec2 = cloud_server
    # The autoscaler's first pass saw the cloud: every state told, none in use yet.
    idle = wait_for(
        lambda: instances_seen(server), timeout=30, what="the autoscaler's first pass in /metrics"
    )
    assert set(idle) == {"pending", "running", "stopping", "stopped", "gone"}
    job_id = server.submit(command="echo rendered", title="frame 1")
    request = wait_for(lambda: live_requests(ec2), timeout=30, what="a spot request")[0]
    # The request (or the instance fulfilling it) is in /metrics once the next pass lists it.
    wait_for(
        lambda: (seen := instances_seen(server))["pending"] + seen["running"] == 1,
        timeout=30,
        what="one live instance in /metrics",
    )
    name = name_of(request)
    assert name.startswith("cloud-")
    row = wait_for(lambda: worker_row(server, name), timeout=10, what="the STARTING worker row")
    assert row["state"] == "STARTING"
    instance_id = request["InstanceId"]  # moto fulfils at once
    # Only one request for one job, whatever the number of ticks meanwhile.
    assert len(live_requests(ec2)) == 1
    # The test plays the instance: a worker under its name, with the token from user-data.
    user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"][
        "Value"
    ]
    boot = base64.b64decode(user_data).decode()
    assert (
        f"name = {name}" in boot and "token = e2e-token" in boot and "serverUrl = http://127.0.0.1:" in boot
    )
    workers(name, server.url, token="e2e-token")
    wait_for(lambda: server.job(job_id)["state"] == "FINISHED", timeout=30, what="the job to finish")
    # Idle past the minimum lifetime (1 s): terminated, spot request cancelled.
    wait_for(
        lambda: instance_state(ec2, instance_id) in ("shutting-down", "terminated"),
        timeout=30,
        what="termination",
    )
    wait_for(lambda: live_requests(ec2) == [], timeout=10, what="the spot request to be cancelled")
    # ... and /metrics follows: nothing live, the terminated instance seen going or gone.
    seen = wait_for(
        lambda: (s := instances_seen(server))["pending"] + s["running"] == 0 and s,
        timeout=30,
        what="no live instance in /metrics",
    )
    assert seen["stopping"] + seen["gone"] == 1, seen
    assert value(scrape(server)["coalition_autoscaler_decisions_last_hour"]) >= 2  # launch, terminate
    events = server.api("GET", "/api/events", params={"worker": "autoscaler", "howlong": 3600})
    texts = [e.get("job_title", "") for e in events]
    assert any("launch 1 instance(s)" in t for t in texts), texts
    assert any(f"terminate {name}" in t and "idle" in t for t in texts), texts
    # ... and the same decisions in the server's log, which runs at WARNING (issue 14).
    log = server.log_path.read_text(errors="replace")
    assert "coalition.cloud: cloud: launch 1 instance(s)" in log, server.log_tail()
    assert f"coalition.cloud: cloud: terminate {name}" in log, server.log_tail()


def test_spot_interruption_requeues_without_spending_a_retry(
    cloud_server: Any, workers: Any, tmp_path: Path
) -> None:
    server, ec2 = cloud_server
    imds = FakeImds()
    try:
        marker = tmp_path / "first-run"
        # The first run sleeps (and gets interrupted); the second run finds the marker and ends.
        command = f"test -e {marker} && exit 0; touch {marker}; sleep 60"
        job_id = server.submit(command=command, title="frame 2", retry=0)
        first = wait_for(lambda: live_requests(ec2), timeout=30, what="a spot request")[0]
        a = name_of(first)
        workers(
            a,
            server.url,
            token="e2e-token",
            interruptions="aws",
            aws_metadata=imds.url,
            interruption_poll=0.2,
        )
        wait_for(lambda: server.job(job_id)["state"] == "WORKING", timeout=30, what="the job to run")
        # AWS reclaims the instance: the notice, then the instance goes.
        imds.notice = True
        job = wait_for(
            lambda: (j := server.job(job_id))["state"] == "WAITING" and j,
            timeout=20,
            what="the job to be handed back",
        )
        assert job["requeues"] == 0 and job["fail_count"] == 0  # a hand-back: no silent requeue
        ec2.terminate_instances(InstanceIds=[first["InstanceId"]])
        # The autoscaler replaces it for the requeued job.
        second = wait_for(
            lambda: [r for r in live_requests(ec2) if name_of(r) != a],
            timeout=30,
            what="a replacement request",
        )[0]
        b = name_of(second)
        workers(b, server.url, token="e2e-token")
        wait_for(lambda: server.job(job_id)["state"] == "FINISHED", timeout=30, what="the job to finish")
        assert server.job(job_id)["fail_count"] == 0
    finally:
        imds.close()


def test_the_boot_back_off_is_seen_and_cleared_through_the_api(cloud_server: Any, tmp_path: Any) -> None:
    """The operator's view of failed boots and the clear, over REST, on a cloud-mode server."""
    from coalition.joblogs import JobLogs
    from coalition.store import SqliteStore
    from coalition.usecases import Context
    from coalition.usecases.cloudfarm import CloudFarm

    server, _ = cloud_server
    store = SqliteStore(str(server.datadir / "coalition.db"))
    try:
        CloudFarm(Context(store, JobLogs(str(tmp_path / "logs"), 1 << 20))).record_boot_failure(
            "cloud-x", "dpkg: error processing package coalition-worker"
        )
    finally:
        store.close()
    failures = server.api("GET", "/api/cloud/backoff")["failures"]
    assert [(f["instance"], f["reason"]) for f in failures] == [
        ("cloud-x", "dpkg: error processing package coalition-worker")
    ]
    assert server.api("POST", "/api/cloud/clearbackoff")["cleared"] == 1
    assert server.api("GET", "/api/cloud/backoff")["failures"] == []


@pytest.mark.browser
def test_the_web_page_shows_the_boot_back_off_and_clears_it(
    cloud_server: Any, browser: Any, tmp_path: Any
) -> None:
    from coalition.joblogs import JobLogs
    from coalition.store import SqliteStore
    from coalition.usecases import Context
    from coalition.usecases.cloudfarm import CloudFarm

    server, _ = cloud_server
    store = SqliteStore(str(server.datadir / "coalition.db"))
    try:
        farm = CloudFarm(Context(store, JobLogs(str(tmp_path / "logs"), 1 << 20)))
        farm.record_boot_failure("cloud-y", "main program: tar: unexpected end of file")
    finally:
        store.close()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        page.goto(server.url + "#workers")
        note = page.locator(".backoff-note")
        note.wait_for(state="visible")
        assert "1 failed worker boot in a row" in note.inner_text()
        assert "cloud-y: main program: tar: unexpected end of file" in note.inner_text()
        page.get_by_role("button", name="Clear back-off").click()
        note.wait_for(state="hidden")
        assert server.api("GET", "/api/cloud/backoff")["failures"] == []
    finally:
        context.close()
