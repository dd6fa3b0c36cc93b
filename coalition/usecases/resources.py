"""Resource requests in `why`: whether any worker could run a job's request at all, and
whether one has room for it now (docs/scheduling.md, "Resources and packing")."""

from __future__ import annotations

from typing import Any

from .. import scheduling
from ..model import W_WAITING, W_WORKING
from ..scheduling import Need
from ..store.base import Row, Tx


def _amounts(need: Need) -> str:
    parts = []
    if need.cores:
        parts.append(f"{need.cores} core{'s' if need.cores > 1 else ''}")
    if need.memory:
        parts.append(f"{need.memory} MB")
    if need.gpus:
        parts.append(f"{need.gpus} GPU{'s' if need.gpus > 1 else ''}")
    return ", ".join(parts) or "a whole host"


def resource_reasons(tx: Tx, need: Need, now: float, timeout: float) -> list[dict[str, Any]]:
    """Why a job with `need` may be waiting for a worker (empty for a job that asks nothing)."""
    if need.bare:
        return []
    hosts: dict[tuple[int, int, int], list[Row]] = {}
    for w in tx.workers():
        alive = (
            w["active"] and w["state"] in (W_WAITING, W_WORKING) and now - float(w["ping_time"]) <= timeout
        )
        if alive:
            hosts.setdefault((int(w["cores"]), int(w["memory"]), int(w["gpus"])), []).append(w)
    able = [rows for (c, m, g), rows in hosts.items() if not scheduling.short_of(need, c, m, g)]
    if not hosts:
        return [{"kind": "resources", "need": need.as_dict(), "text": "no worker is alive to take it"}]
    if not able:
        # Per amount, the most any host has: what no host has is what the message names.
        most = [max(k[i] for k in hosts) for i in range(3)]
        short = scheduling.short_of(need, *most) or scheduling.short_of(need, 0, 0, 0)
        text = "no worker has " + " and ".join(short)
        return [{"kind": "resources", "need": need.as_dict(), "text": text}]
    busy = sum(len(rows) for rows in able)
    return [
        {
            "kind": "resources",
            "need": need.as_dict(),
            "text": f"waiting for a worker with {_amounts(need)} free"
            + (" (the whole host)" if need.exclusive else "")
            + f" ({busy} slot{'s' if busy > 1 else ''} could run it)",
        }
    ]
