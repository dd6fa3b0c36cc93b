"""Fixtures of the access-control tests: a private slapd loaded with the documented example
(administrators, wranglers, artists), LDAP-enabled server processes, and logged-in clients.

The LDAP keys are the documented sample of chapter 3.1.3 verbatim (the PDF's line breaks
aside), including its misspelled `ldaptemplatellogin`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ServerProcess, free_port
from tests.support import require, require_binary, wait_for

BASE = "dc=ldap,dc=localhost,dc=lan"
ROOT_DN = f"cn=root,{BASE}"
ROOT_PW = "rootpw"
TOKEN = "worker-token-for-tests"

# login -> group (None: a directory user in no group: may log in, may do nothing)
USERS: dict[str, str | None] = {
    "admin1": "administrators",
    "wrangler1": "wranglers",
    "artist1": "artists",
    "artist2": "artists",
    "nobody1": None,
}


def password(user: str) -> str:
    """Each test user's password."""
    return f"{user}-Secret!"


_MEMBER = "member=cn=__login__,dc=ldap,dc=localhost,dc=lan"
DOC_TEMPLATES = {
    "ldaptemplatecreatejob": f"(& (cn=artists) ({_MEMBER}) )",
    "ldaptemplateviewjob": f"(& (cn=artists) ({_MEMBER}) )",
    "ldaptemplateeditjob": f"(& (cn=artists) ({_MEMBER}) )",
    "ldaptemplatedeletejob": f"(& (cn=artists) ({_MEMBER}) )",
    "ldaptemplatecreatejobglobal": f"(& (| (cn=administrators) (cn=wranglers) ) ({_MEMBER}) )",
    "ldaptemplateviewjobglobal": f"(& (| (cn=administrators) (cn=wranglers) ) ({_MEMBER}) )",
    "ldaptemplateeditjobglobal": f"(& (| (cn=administrators) (cn=wranglers) ) ({_MEMBER}) )",
    "ldaptemplatedeletejobglobal": f"(& (cn=administrators) ({_MEMBER}) )",
}


@dataclass
class Slapd:
    """A private slapd on a loopback port."""

    url: str
    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) slapd on the same port and data."""
        log = open(self.directory / "slapd.log", "ab")
        self.proc = subprocess.Popen(
            [_slapd(), "-d", "0", "-f", str(self.directory / "slapd.conf"), "-h", self.url + "/"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(self._ready, timeout=20, interval=0.02, what="slapd to answer")

    def _ready(self) -> bool:
        import ldap3

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"slapd exited: {(self.directory / 'slapd.log').read_text()[-2000:]}")
        try:
            conn = ldap3.Connection(ldap3.Server(self.url, connect_timeout=1), ROOT_DN, ROOT_PW)
            ok = bool(conn.bind())
            conn.unbind()
            return ok
        except ldap3.core.exceptions.LDAPException:
            return False

    def stop(self) -> None:
        """Kill slapd (as an outage would)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _slapd() -> str:
    return require_binary("slapd", "slapd ldap-utils (see reference/tooling.md section 3)")


def start_slapd(directory: Path) -> Slapd:
    """A slapd with the documented three groups (reference/tooling.md section 3, recipe b)."""
    _slapd()
    schema = Path("/etc/ldap/schema")
    modules = next((p for p in ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap") if os.path.isdir(p)), "")
    require(schema.is_dir() and bool(modules), "slapd schema or modules missing: apt-get install slapd")
    (directory / "db").mkdir(parents=True)
    (directory / "slapd.conf").write_text(
        "\n".join(
            [
                *(f"include {schema}/{name}.schema" for name in ("core", "cosine", "inetorgperson")),
                f"modulepath {modules}",
                "moduleload back_mdb",
                f"pidfile {directory}/slapd.pid",
                "database mdb",
                "maxsize 104857600",
                f'suffix "{BASE}"',
                f'rootdn "{ROOT_DN}"',
                f"rootpw {ROOT_PW}",
                f"directory {directory}/db",
                "index objectClass,member,cn eq",
                # Passwords are for binds only; everything else may be searched anonymously.
                "access to attrs=userPassword by anonymous auth by * none",
                "access to * by * read",
                "",
            ]
        )
    )
    port = free_port()
    slapd = Slapd(f"ldap://127.0.0.1:{port}", port, directory)
    slapd.start()
    _load(slapd.url)
    return slapd


def _load(url: str) -> None:
    import ldap3

    conn = ldap3.Connection(ldap3.Server(url), ROOT_DN, ROOT_PW, auto_bind=True)
    conn.add(BASE, ["dcObject", "organization"], {"dc": "ldap", "o": "Coalition"})
    for user in USERS:
        conn.add(f"cn={user},{BASE}", ["inetOrgPerson"], {"sn": user, "userPassword": password(user)})
    for group in ("administrators", "wranglers", "artists"):
        members = [f"cn={u},{BASE}" for u, g in USERS.items() if g == group]
        conn.add(f"cn={group},{BASE}", ["groupOfNames"], {"member": members})
        assert conn.result["result"] == 0, conn.result
    conn.unbind()


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """The shared directory (never stopped by a test: see `own_slapd`)."""
    directory = Path(tempfile.mkdtemp(prefix="coal-slapd-"))
    server = start_slapd(directory)
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A directory of this test's own (for tests that kill it)."""
    server = start_slapd(tmp_path / "ldap")
    yield server
    server.stop()


def ldap_keys(slapd: Slapd, **extra: Any) -> dict[str, Any]:
    """[server] keys of the documented LDAP sample against `slapd`."""
    return {
        "ldaphost": slapd.url,
        "ldapbase": BASE,
        "ldaptemplatellogin": f"cn=__login__,{BASE}",  # the documented spelling
        **DOC_TEMPLATES,
        "workertoken": TOKEN,
        **extra,
    }


class AuthServer(ServerProcess):
    """A server process that may answer 401 to anonymous requests, or speak HTTPS."""

    def __init__(self, root: Path, cafile: str = "", **keys: Any):
        super().__init__(root, **keys)
        self.cafile = cafile
        if keys.get("ssl_certificate"):
            self.url = self.url.replace("http://", "https://")
            self.session.verify = cafile

    def answers(self) -> bool:
        """Any HTTP answer counts (anonymous requests get 401 with LDAP on)."""
        requests.get(self.url + "/api/ping", timeout=1, verify=self.cafile or True)
        return True

    def client(self, user: str | None = None, pw: str | None = None) -> requests.Session:
        """A session speaking HTTP Basic as `user` (None: anonymous)."""
        s = requests.Session()
        s.verify = self.cafile or True
        if user is not None:
            s.auth = (user, password(user) if pw is None else pw)
        return s

    def worker(self, route: str, body: dict[str, Any], token: str = TOKEN) -> requests.Response:
        """A worker-protocol call carrying the token."""
        return requests.post(
            f"{self.url}/workers/{route}",
            json=body,
            headers={"X-Coalition-Token": token} if token else {},
            timeout=30,
            verify=self.cafile or True,
        )


def _python() -> str:
    import sys

    return sys.executable


@pytest.fixture
def make_auth_server(tmp_path: Path) -> Iterator[Any]:
    """make_auth_server(**[server] keys) -> a started AuthServer, stopped at the end."""
    servers: list[AuthServer] = []

    def make(start: bool = True, cafile: str = "", **keys: Any) -> AuthServer:
        root = tmp_path / f"server{len(servers)}"
        root.mkdir()
        server = AuthServer(root, cafile, **keys)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def ldap_farm(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """One LDAP server process shared by the permission tests (each test makes its jobs)."""
    root = tmp_path_factory.mktemp("ldapfarm")
    server = AuthServer(root, **ldap_keys(slapd))
    server.start()
    yield server
    server.stop()


@dataclass
class Cert:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA)."""

    cert: str
    key: str


def make_cert(directory: Path) -> Cert:
    """Write a fresh self-signed certificate and key into `directory`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coalition test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Cert(str(cert_path), str(key_path))
