"""The audit trail: who created, edited, paused, reset or deleted what. Rows are written
in the transaction that makes the change, so the trail cannot miss one."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .store.base import Row, Tx


@dataclass(frozen=True)
class Actor:
    """Who asks for a change, for the audit trail: the login ("" when nobody logged in)
    and the client's address."""

    user: str = ""
    address: str = ""


NOBODY = Actor()


_AUDIT_TARGET_MAX = 4000  # characters of ids or names kept per audit row


def record_audit(
    tx: Tx,
    actor: Actor,
    action: str,
    owner: str,
    targets: Sequence[int | str],
    now: float,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record one action in the transaction that makes it (so the trail cannot miss one)."""
    target = ",".join(str(t) for t in targets)
    if len(target) > _AUDIT_TARGET_MAX:
        target = target[: target.rfind(",", 0, _AUDIT_TARGET_MAX)] + ",..."
    tx.insert_audit(
        {
            "at": now,
            "actor": actor.user[:255],
            "address": actor.address[:64],
            "action": action,
            "owner": owner[:255],
            "target": f",{target}," if target else "",
            "detail": json.dumps(dict(detail or {}), separators=(",", ":")),
        }
    )


def audit_rows(
    tx: Tx, actor: Actor, action: str, rows: Sequence[Row], now: float, titles: bool = False
) -> None:
    """One audit row per owner of the jobs acted on (owners see what was done to their jobs)."""
    by_owner: dict[str, list[Row]] = {}
    for row in rows:
        by_owner.setdefault(row["user"], []).append(row)
    for owner, owned in by_owner.items():
        detail = {"titles": [r["title"][:200] for r in owned[:50]]} if titles else None
        record_audit(tx, actor, action, owner, [r["id"] for r in owned], now, detail)


_WORKER_ACTIONS = frozenset({"editworkers", "deleteworkers", "startworkers", "stopworkers", "clearsick"})


def audit_view(row: Row) -> dict[str, Any]:
    """An audit row as the API shows it."""
    targets = [t for t in row["target"].strip(",").split(",") if t]
    out: dict[str, Any] = {
        "id": row["id"],
        "time": row["at"],
        "user": row["actor"],
        "address": row["address"],
        "action": row["action"],
        "owner": row["owner"],
    }
    if row["action"] in _WORKER_ACTIONS:
        out["workers"] = targets
    elif row["action"] == "limits":
        out["limits"] = targets
    elif row["action"] not in ("affinities", "login", "logout"):
        out["jobs"] = [int(t) if t.isdigit() else t for t in targets]
    try:
        out["detail"] = json.loads(row["detail"] or "{}")
    except ValueError:
        out["detail"] = {}
    return out
