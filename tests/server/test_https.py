"""HTTPS: the server's certificate settings, clients that verify against a CA file, and
the session cookie's Secure flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from coalition.client import Connection, ServerUnavailable
from coalition.config import ConfigError, load_server_settings
from coalition.worker.link import ServerLink, Unreachable
from tests.authfarm import TOKEN, Slapd, ldap_keys, make_cert, password


def test_https_server_verified_with_a_ca_file(
    slapd: Slapd, make_auth_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets these variables override a Session's `verify` (requests issue #3829).
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    cert = make_cert(tmp_path / "tls")
    farm = make_auth_server(
        cafile=cert.cert,
        **ldap_keys(slapd, ssl_certificate=cert.cert, ssl_private_key=cert.key),
    )
    assert farm.url.startswith("https://")
    # Verified with the CA file: fine. With the system CAs: refused. In clear: no answer.
    assert farm.client("artist1").get(farm.url + "/api/jobs").status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(farm.url + "/api/jobs", auth=("artist1", password("artist1")), timeout=30)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(farm.url.replace("https://", "http://") + "/api/ping", timeout=5)
    # Under HTTPS the session cookie is Secure.
    r = requests.post(
        farm.url + "/api/login", json={"user": "artist1", "password": password("artist1")}, verify=cert.cert
    )
    assert r.status_code == 200 and "Secure" in r.headers["Set-Cookie"]
    # The Python client takes the CA file too (the CLI's --cacert and [worker] cacert use it).
    conn = Connection(farm.url, auth=("artist1", password("artist1")), cacert=cert.cert)
    jid = conn.newJob(title="over tls", command="true")
    assert conn.getJob(jid).user == "artist1"
    with pytest.raises(ServerUnavailable):
        Connection(farm.url, auth=("artist1", password("artist1"))).request("GET", "/api/jobs")
    # The worker's own HTTP link ([worker] cacert) verifies the same way.
    link = ServerLink(farm.url, token=TOKEN, cacert=cert.cert)
    assert link.heartbeat({"name": "tls-worker"})["ok"] is True
    assert link.heartbeat({"name": "tls-worker"})["ok"] is True  # the kept-alive TLS connection
    link.close()
    with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
        ServerLink(farm.url, token=TOKEN).heartbeat({"name": "tls-worker"})


@pytest.mark.parametrize("keys", [{"ssl_certificate": "x.pem"}, {"ssl_private_key": "x.pem"}])
def test_half_a_tls_setting_is_refused(keys: dict[str, str], tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[server]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    with pytest.raises(ConfigError, match="go together"):
        load_server_settings(str(ini))


def test_unreadable_certificate_is_refused(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text(
        f"[server]\nssl_certificate = {tmp_path}/none.pem\nssl_private_key = {tmp_path}/none.key\n"
    )
    with pytest.raises(ConfigError, match="cannot read"):
        load_server_settings(str(ini))
