"""A private, throwaway MariaDB server for the benchmarks (as tests/conftest.py starts one)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def private_mariadb() -> Iterator[dict[str, Any]]:
    """Start mariadbd on a free loopback port; yields the [server] db_* keys for it."""
    install, daemon = shutil.which("mariadb-install-db"), shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    if not install or not os.path.exists(daemon):
        raise RuntimeError("MariaDB is not installed (apt-get install mariadb-server)")
    import pymysql

    datadir = tempfile.mkdtemp(prefix="coal-bench-mariadb-")
    sock = os.path.join(datadir, "mysqld.sock")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [
            daemon,
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--pid-file={datadir}/m.pid",
            "--bind-address=127.0.0.1",
            f"--port={port}",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=512M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = pymysql.connect(unix_socket=sock, user="root")
                break
            except pymysql.err.MySQLError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mariadbd did not start") from None
                time.sleep(0.1)
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE coalition CHARACTER SET utf8mb4")
            cur.execute("CREATE USER 'coal'@'127.0.0.1' IDENTIFIED BY 'coalpw'")
            cur.execute("GRANT ALL ON coalition.* TO 'coal'@'127.0.0.1'")
        conn.commit()
        conn.close()
        yield {
            "db_type": "mysql",
            "db_mysql_host": "127.0.0.1",
            "db_mysql_port": port,
            "db_mysql_user": "coal",
            "db_mysql_password": "coalpw",
            "db_mysql_base": "coalition",
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(datadir, ignore_errors=True)
