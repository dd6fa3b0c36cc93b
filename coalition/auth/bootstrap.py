"""A new coalition.ini with a random worker token, so that a fresh farm is closed by default:
only workers given the token may fetch commands or report results."""

from __future__ import annotations

import datetime
import os
import secrets


def new_token() -> str:
    """A random worker token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def config_text(token: str, server_keys: dict[str, str] | None = None) -> str:
    """The text of a new coalition.ini: [server] with `workertoken`, [worker] with `token`."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"# Written by `coalition-server --init` on {stamp}.",
        "# Every documented key is described in the Coalition documentation (chapter 3.1.3)",
        "# and in docs/security.md for the access-control keys.",
        "",
        "[server]",
    ]
    for key, value in (server_keys or {}).items():
        lines.append(f"{key} = {value}")
    lines += [
        "# Workers must send this token (their [worker] token). Keep this file private.",
        f"workertoken = {token}",
        "",
        "# LDAP login and permissions (see docs/security.md):",
        "# ldaphost = ldap://ldap.example.com",
        "# ldapbase = dc=example,dc=com",
        "# ldaptemplatelogin = uid=__login__,ou=people,dc=example,dc=com",
        "",
        "[worker]",
        "# Copy this section's token to every worker's coalition.ini.",
        f"token = {token}",
        "",
    ]
    return "\n".join(lines)


def write_new_config(path: str, server_keys: dict[str, str] | None = None) -> str:
    """Create `path` (never overwriting an existing file), readable by its owner only;
    returns the token written."""
    token = new_token()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(config_text(token, server_keys))
    return token
