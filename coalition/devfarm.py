"""`make run`: a whole farm on this machine — the server on SQLite plus a local worker with
two slots — until Ctrl-C stops both."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def write_ini(path: str, port: int, datadir: str) -> None:
    """Write the ini of a development farm (kept if it exists: edits survive a restart)."""
    if os.path.exists(path):
        return
    token = secrets.token_urlsafe(32)  # closed by default, like `coalition-server --init`
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(
            "# Written by `make run`: a farm on this machine only (listens on 127.0.0.1).\n"
            "[server]\n"
            f"port = {port}\n"
            "listen = 127.0.0.1\n"
            f"datadir = {os.path.abspath(datadir)}\n"
            f"workertoken = {token}\n"
            "\n[worker]\n"
            f"serverUrl = http://127.0.0.1:{port}\n"
            f"token = {token}\n"
            "workers = 2\n"
            "sleep = 1\n"
            "# No cloud metadata probes on a laptop (see docs/worker.md).\n"
            "interruptions = off\n"
        )


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "api/ping", timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    """Run the server and a local worker; Ctrl-C stops both."""
    p = argparse.ArgumentParser(prog="make run")
    p.add_argument("--port", type=int, default=19211)
    p.add_argument("--datadir", default="var")
    args = p.parse_args(argv)
    os.makedirs(args.datadir, exist_ok=True)
    ini = os.path.join(args.datadir, "coalition.ini")
    write_ini(ini, args.port, args.datadir)
    # SIGTERM (make killed, a terminal closed) stops the farm like Ctrl-C: `finally` below runs.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    server = subprocess.Popen([sys.executable, "-m", "coalition.server.main", "-c", ini])
    url = f"http://127.0.0.1:{args.port}/"
    procs = [server]
    try:
        if not _wait_up(url, server):
            print(
                "make run: the server did not start (is the port taken? try `make run PORT=19300`)",
                file=sys.stderr,
            )
            return 1
        try:
            import coalition.worker.main  # noqa: F401
        except ImportError:
            print("make run: no worker installed; running the server alone", file=sys.stderr)
        else:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "coalition.worker.main",
                        "-c",
                        ini,
                        "-n",
                        socket.gethostname(),
                        "-w",
                        "2",
                        f"http://127.0.0.1:{args.port}",
                    ]
                )
            )
        print(f"\nCoalition is running: open {url} in a browser (Ctrl-C stops the farm)\n", flush=True)
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
