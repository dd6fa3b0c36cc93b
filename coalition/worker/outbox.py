"""A slot's outbox: results delivered in the background, in order, several in one request.

A slot that holds jobs (docs/protocol.md, "Held jobs") starts its next job the moment a run
ends and leaves that run's result here. One thread per outbox takes everything queued, hands
it to `deliver` as one batch (one endjob for several short runs), and repeats while more
came meanwhile: the batches grow with the server's answer time, by themselves.

A slot that still holds jobs to start needs no answer yet: its outbox may `linger` until
`ready` says the batch is worth a request (several results, or the slot running short of held
jobs). One request for several runs halves the server's work per short job (bench/e2e.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("coalition.worker")

T = TypeVar("T")


class Outbox(Generic[T]):
    """Items delivered in order by one background thread, in batches of what is queued.

    `deliver(batch)` must not return before the batch is delivered (it retries itself); an
    exception it raises is logged and the batch dropped (a bug must not stop the slot).
    With `ready` and `linger`, a batch waits up to `linger` seconds from its first item
    until `ready(len(queued))` is true (asked again at each put, and on a `settle`, which
    wants the answers now)."""

    def __init__(
        self,
        deliver: Callable[[list[T]], None],
        name: str,
        ready: Callable[[int], bool] | None = None,
        linger: float = 0.0,
    ) -> None:
        self._deliver = deliver
        self._ready = ready
        self._linger = linger if ready is not None else 0.0
        self._cond = threading.Condition()
        self._items: list[T] = []
        self._busy = False  # a batch is being delivered
        self._urgent = False  # someone waits for the answers: no lingering
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-outbox", daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        """Queue an item (delivered with whatever else is queued when the thread is free)."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def pending(self) -> int:
        """Items queued or being delivered (0: all delivered)."""
        with self._cond:
            return len(self._items) + self._busy

    def settle(self, until: Callable[[], bool] | None = None) -> None:
        """Wait until everything queued so far is delivered, or, with `until`, until that
        turns true (checked after each batch)."""
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (not self._items and not self._busy) or (until is not None and until())
            )
            self._urgent = False

    def close(self) -> None:
        """Deliver what is queued, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _may_go(self) -> bool:
        assert self._ready is not None
        return self._closing or self._urgent or self._ready(len(self._items))

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._closing)
                if not self._items:
                    return
                if self._linger > 0:
                    self._cond.wait_for(self._may_go, self._linger)
                batch, self._items = self._items, []
                self._busy = True
            try:
                self._deliver(batch)
            except Exception:  # noqa: BLE001 - logged; the slot goes on
                log.exception("delivering %d result(s) in the background failed", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
