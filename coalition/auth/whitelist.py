"""`commandwhitelist`: which commands a user may run.

The value is a multi-line ini value. Lines before the first `@user` header form the global
rule set; the lines after `@name` form that user's rule set. Each line is a Python regular
expression matched against the WHOLE command (`re.fullmatch`: Coalition 4 anchored only the
start, so `echo .*` also let `echo; rm -rf ~` through... and `render` let `render; anything`).
Blank lines are ignored; configparser already drops `#` and `;` comment lines.

The 4.0 documentation writes each rule after a first word naming its set: `global echo .*`
in the global list, `user1 render .*` under `@user1`. That word is dropped when it is there
(`global`, or the section's user name, followed by a space); a line without it is a bare
expression, read whole. To match a command that itself begins with that word, write it twice
(`global global .*`).

A command is allowed when it matches a global rule or a rule of its user's own set. Once any
rule is configured, a user with no set of their own is held to the global rules (Coalition 4
let such users run anything when no global rule existed: a whitelist that lets unknown users
run everything is not one). An empty value turns the whitelist off. A job with no command
(a group) runs nothing and is always allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


class WhitelistError(ValueError):
    """A rule that is not a valid regular expression (the message names its line)."""


@dataclass(frozen=True)
class Whitelist:
    """Parsed rule sets; `check` says whether a user may run a command."""

    global_rules: tuple[re.Pattern[str], ...] = ()
    user_rules: Mapping[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether any rule is configured (no rule at all: every command is allowed)."""
        return bool(self.global_rules) or bool(self.user_rules)

    def refusal(self, user: str, command: str) -> str | None:
        """None when `user` may run `command`, else why not, naming the rule sets tried."""
        if not self.active or command == "":
            return None
        own = self.user_rules.get(user)
        for rule in (*self.global_rules, *(own or ())):
            if rule.fullmatch(command):
                return None
        sets = [f"the {len(self.global_rules)} global rule(s)"] if self.global_rules else []
        if own is not None:
            sets.append(f"the {len(own)} rule(s) of @{user}")
        tried = f"it matches none of {' nor '.join(sets)}" if sets else "there is no rule it could match"
        missing = (
            "" if own is not None else f" ({user or 'an anonymous user'} has no @{user or 'user'} rules)"
        )
        return f"commandwhitelist refused the command: {tried}{missing}"


def parse_whitelist(text: str) -> Whitelist:
    """Parse a `commandwhitelist` value; WhitelistError names a bad line."""
    global_rules: list[re.Pattern[str]] = []
    users: dict[str, list[re.Pattern[str]]] = {}
    current: list[re.Pattern[str]] = global_rules
    owner = "global"  # the first word the documented form gives the current section's rules
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("@"):
            name = line[1:].strip()
            if not name or any(c.isspace() for c in name):
                raise WhitelistError(f"commandwhitelist line {number}: {line!r} is not an @user header")
            current = users.setdefault(name, [])
            owner = name
            continue
        first, _, rest = line.partition(" ")
        if first == owner and rest.strip():
            line = rest.strip()
        try:
            current.append(re.compile(line))
        except re.error as exc:
            raise WhitelistError(f"commandwhitelist line {number}: {line!r}: {exc}") from None
    return Whitelist(tuple(global_rules), {k: tuple(v) for k, v in users.items()})
