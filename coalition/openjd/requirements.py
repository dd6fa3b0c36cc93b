"""A step's `hostRequirements` as Coalition sees them: resource requests and tags. Pure.

OpenJD describes hosts by *amounts* (`amount.worker.vcpu`, `amount.worker.memory` in MiB,
`amount.worker.gpu`, ...; each a `min` and/or a `max`) and *attributes*
(`attr.worker.os.family`, `attr.worker.cpu.arch`, custom `attr.*`; each `anyOf` or `allOf`
a list of values). Coalition schedules by resource requests (a job's `cores`, `memory` in
MB and `gpus`, which a worker fits into its own totals) and by tags (a job runs where a
worker's affinity line offers every tag of it). So:

* an amount's `min` becomes the request (`vcpu` -> cores, `memory` -> memory, `gpu` -> gpus,
  rounded up); a `max`, and every other amount, cannot be enforced and is reported in `notes`;
* an attribute becomes tags. `attr.worker.os.family` and `attr.worker.cpu.arch` values are
  tags as they are (`linux`, `x86_64`: what an OpenJD-capable worker offers on each of its
  rule lines, scheduling.with_offers); any other attribute `attr.[custom.]NAME` value V is
  the tag `NAME=V`, which operators give the workers that have it. `allOf` asks for every value: one tag each.
  `anyOf` asks for one of them: a single value is its tag, several make one tag of
  alternatives `a or b` (scheduling.tags_met: a worker offering any of them takes it).
  An anyOf that lists every value a standard attribute can have asks for nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

# The values the 2023-09 specification allows for the standard attributes.
OS_FAMILIES = ("linux", "macos", "windows")
CPU_ARCHES = ("arm64", "x86_64")
_STANDARD = {"attr.worker.os.family": OS_FAMILIES, "attr.worker.cpu.arch": CPU_ARCHES}
# amount name -> the job attribute its minimum becomes
_REQUESTS = {"amount.worker.vcpu": "cores", "amount.worker.memory": "memory", "amount.worker.gpu": "gpus"}
_BAD_IN_TAG = (",", "|", " or ", "\n", "\r", "\x00")
MAX_TAG = 255  # the tag registry's VARCHAR(255)


class RequirementError(ValueError):
    """A requirement Coalition cannot express (its message names the step and the field)."""


@dataclass(frozen=True)
class Requirements:
    """What one step asks of the host that runs its tasks."""

    cores: int = 0  # CPU cores requested (0: no request)
    memory: int = 0  # MB requested
    gpus: int = 0
    tags: tuple[str, ...] = ()  # every one must be offered by the worker's affinity line
    notes: tuple[str, ...] = ()  # requirements Coalition does not enforce, for the submitter

    def resources(self) -> dict[str, int]:
        """The resource requests as job attributes (`cores`, `memory`, `gpus`)."""
        return {"cores": self.cores, "memory": self.memory, "gpus": self.gpus}


def _number(step: str, name: str, key: str, value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise RequirementError(f"step {step}: {name} {key} must be a number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise RequirementError(f"step {step}: {name} {key} must be a number >= 0, got {value!r}")
    return number


def _tag(step: str, name: str, value: Any) -> str:
    text = str(value).strip()
    if name in _STANDARD:
        text = text.lower()
        tag = text
    else:
        short = name.removeprefix("attr.")
        short = short.removeprefix("custom.") or short
        tag = f"{short}={text}"
    if not text or any(c in tag for c in _BAD_IN_TAG) or len(tag) > MAX_TAG:
        raise RequirementError(
            f"step {step}: {name} value {str(value)[:80]!r} cannot be a Coalition tag "
            f"(empty, longer than {MAX_TAG} characters, or holding a comma, '|', ' or ' or a newline)"
        )
    return tag


def _attribute(step: str, attr: Mapping[str, Any]) -> list[str]:
    name = str(attr.get("name", ""))
    any_of: Sequence[Any] = attr.get("anyOf") or ()
    all_of: Sequence[Any] = attr.get("allOf") or ()
    tags = [_tag(step, name, v) for v in all_of]
    if any_of:
        choices = sorted({_tag(step, name, v) for v in any_of})
        known = _STANDARD.get(name)
        if known is not None and set(known) <= set(choices):
            return tags  # any value at all: no constraint
        alternatives = " or ".join(choices)
        if len(alternatives) > MAX_TAG:
            raise RequirementError(f"step {step}: {name} anyOf lists too many values for one tag")
        tags.append(alternatives)
    return tags


def host_requirements(step: str, requirements: Mapping[str, Any] | None) -> Requirements:
    """Map one step's `hostRequirements` (the template's object: `amounts`, `attributes`).

    Raises RequirementError for a value no tag can hold (a comma in an attribute value)."""
    if not requirements:
        return Requirements()
    wanted = {"cores": 0, "memory": 0, "gpus": 0}
    notes: list[str] = []
    for amount in requirements.get("amounts") or ():
        name = str(amount.get("name", ""))
        low = amount.get("min")
        high = amount.get("max")
        target = _REQUESTS.get(name)
        if target is None:
            notes.append(f"step {step}: {name} is not enforced (Coalition has no such resource)")
            continue
        if low is not None:
            wanted[target] = max(wanted[target], math.ceil(_number(step, name, "min", low)))
        if high is not None:
            _number(step, name, "max", high)
            notes.append(f"step {step}: {name} max {high} is not enforced (only the minimum is requested)")
    tags: list[str] = []
    for attr in requirements.get("attributes") or ():
        for tag in _attribute(step, attr):
            if tag not in tags:
                tags.append(tag)
    return Requirements(wanted["cores"], wanted["memory"], wanted["gpus"], tuple(tags), tuple(notes))


def worker_tags(system: str, machine: str) -> tuple[str, str]:
    """The standard attribute tags of a host (`platform.system()`, `platform.machine()`):
    its OS family and CPU architecture in OpenJD's spelling (`linux`, `x86_64`)."""
    family = {"darwin": "macos"}.get(system.lower(), system.lower())
    arch = {"amd64": "x86_64", "aarch64": "arm64"}.get(machine.lower(), machine.lower())
    return family, arch
