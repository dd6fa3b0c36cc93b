"""Write each role's meta/argument_specs.yml from its defaults/main.yml.

    .venv/bin/python ansible/make_argument_specs.py

The comments above each default are its description; types come from the defaults and,
for the ini keys, from the parsers the server and the worker use. Run it after changing
a default; tests/packaging/test_config_sample.py fails while the two disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROLES = Path(__file__).resolve().parent / "roles"
sys.path.insert(0, str(ROLES.parents[1]))

from coalition.config import _SERVER_TYPES  # noqa: E402
from coalition.worker.settings import KEYS as WORKER_KEYS  # noqa: E402

# Secrets: never shown by Ansible (no_log).
SECRET = re.compile(r"password|passwd|token$|secret$")
# Values the templates accept as a string or a list of lines, or as a number or a word.
LINES = ("_commandwhitelist", "_logrules")
NUMBER_OR_WORD = ("_workers",)  # workers: auto, or a number of slots


class Indented(yaml.SafeDumper):
    """Lists indented under their key, as yamllint (ansible-lint) wants them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def ini_keys(role: Path, kind: str) -> dict[str, tuple[str, Any]]:
    """Role variable -> (ini key, the program's parser of that key)."""
    names = yaml.safe_load((role / "vars/main.yml").read_text())[f"coalition_{kind}_ini_keys"]
    if kind == "server":
        return {f"coalition_server_{k}": (k, _SERVER_TYPES[k]) for k in names}
    return {f"coalition_worker_{p['var']}": (p["key"], WORKER_KEYS[p["key"].lower()][1]) for p in names}


def comments(lines: list[str], ini: dict[str, Any]) -> dict[str, str]:
    """The comment block above each variable; a variable right under a commented one
    (no blank line) and outside the ini keys points to it."""
    found: dict[str, str] = {}
    pending: list[str] = []
    previous = None
    for line in lines:
        if line.startswith("##") or not line.strip():
            pending, previous = [], None
        elif line.startswith("#"):
            pending.append(line.lstrip("#").strip())
        elif match := re.match(r"^(\w+):", line):
            key = match.group(1)
            if pending:
                found[key] = " ".join(pending)
                previous = key
            elif previous and key not in ini:
                found[key] = f"See {previous}."
            pending = []
    return found


def accepts_float(parse: Any) -> bool:
    try:
        parse("0.5")
    except ValueError:
        return False
    return True


def option(key: str, value: Any, text: str, ini: dict[str, tuple[str, Any]], kind: str) -> dict[str, Any]:
    if key in ini:
        where = f"[{kind}] {ini[key][0]}"
        doc = f"/usr/share/doc/coalition-{kind}/examples/coalition.ini"
        text = f"{where}: {text}" if text else f"{where}, documented in {doc}."
    spec: dict[str, Any] = {"description": text or key}
    if isinstance(value, bool):
        spec["type"] = "bool"
    elif isinstance(value, (int, float)):
        spec["type"] = "float" if key in ini and accepts_float(ini[key][1]) else "int"
    elif isinstance(value, list):
        spec["type"], spec["elements"] = "list", "raw"
    elif value is None or key.endswith(LINES) or key.endswith(NUMBER_OR_WORD):
        spec["type"] = "raw"
    else:
        spec["type"] = "str"
    spec["default"] = value
    if SECRET.search(key):
        spec["no_log"] = True
    return spec


def specs(role: Path) -> str:
    kind = role.name.split("_")[1]
    lines = (role / "defaults/main.yml").read_text().splitlines()
    defaults = yaml.safe_load("\n".join(lines))
    ini = ini_keys(role, kind)
    notes = comments(lines, ini)
    main = {
        "short_description": f"Coalition render-farm {kind} from its Debian packages",
        "description": [
            f"Installs coalition-{kind}, writes the [{kind}] section of /etc/coalition/coalition.ini "
            "and keeps the systemd service enabled and running.",
            f"Every key of [{kind}] is a variable; defaults/main.yml holds the defaults.",
        ],
        "options": {k: option(k, v, notes.get(k, ""), ini, kind) for k, v in defaults.items()},
    }
    head = "---\n# Written by ansible/make_argument_specs.py from defaults/main.yml: do not edit.\n"
    body = yaml.dump({"argument_specs": {"main": main}}, Dumper=Indented, sort_keys=False, width=100)
    return head + body


if __name__ == "__main__":
    for role in ("coalition_server", "coalition_worker"):
        (ROLES / role / "meta/argument_specs.yml").write_text(specs(ROLES / role))
