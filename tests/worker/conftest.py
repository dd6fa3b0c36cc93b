"""Real `coalition-worker` processes for the end-to-end tests, and a fake instance-metadata
service (the one allowed stand-in: no cloud runs here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import terminate_process


class WorkerProcess:
    """A `python -m coalition.worker.main` process with its own ini and log file."""

    def __init__(self, root: Path, args: list[str], keys: dict[str, Any], env: dict[str, str] | None = None):
        self.root = root
        self.ini_path = root / "worker.ini"
        self.log_path = root / "worker.log"
        lines = ["[worker]"] + [f"{k} = {v}" for k, v in keys.items()]
        self.ini_path.write_text("\n".join(lines) + "\n")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coalition.worker.main", "-c", str(self.ini_path), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the worker logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a crashed host would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        terminate_process(self.proc)


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Any]:
    """make_worker(url_or_None, *args, env=None, **[worker] keys) -> a started WorkerProcess.

    Defaults keep tests fast and hermetic: 0.2 s heartbeats, no metadata probing, a 2 s
    kill grace. `env` adds to the process's environment. Every worker is stopped at the end
    of the test.
    """
    workers: list[WorkerProcess] = []

    def make(url: str | None, *args: str, env: dict[str, str] | None = None, **keys: Any) -> WorkerProcess:
        root = tmp_path / f"worker{len(workers)}"
        root.mkdir()
        settings = {"sleep": 0.2, "interruptions": "off", "killgrace": 2, "name": f"w{len(workers)}", **keys}
        worker = WorkerProcess(root, [*args, url] if url else list(args), settings, env)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()


class FakeMetadata:
    """A local stand-in for the AWS (IMDSv2) and GCE metadata services."""

    def __init__(self) -> None:
        self.aws_notice = False
        self.gce_preempted = False
        self.token_requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    outer.token_requests += 1
                    self._send(200, "tok-123")
                else:
                    self._send(400, "bad token request")

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/latest/meta-data/spot/instance-action":
                    if self.headers.get("X-aws-ec2-metadata-token") != "tok-123":
                        self._send(401, "")
                    elif outer.aws_notice:
                        self._send(200, json.dumps({"action": "terminate", "time": "2030-01-01T00:00:00Z"}))
                    else:
                        self._send(404, "")
                elif self.path == "/computeMetadata/v1/instance/preempted":
                    if self.headers.get("Metadata-Flavor") != "Google":
                        self._send(403, "missing Metadata-Flavor")
                    else:
                        self._send(
                            200, "TRUE" if outer.gce_preempted else "FALSE", {"Metadata-Flavor": "Google"}
                        )
                else:
                    self._send(404, "")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    """A fake metadata service on 127.0.0.1."""
    fake = FakeMetadata()
    yield fake
    fake.close()
