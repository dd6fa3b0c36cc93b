"""A slot's outbox: results delivered in the background, in order, several in one request.

A slot that holds jobs (docs/protocol.md, "Held jobs") starts its next job the moment a run
ends and leaves that run's result here. One thread per outbox takes everything queued, hands
it to `deliver` as one batch (one endjob for several short runs), and repeats while more
came meanwhile: the batches grow with the server's answer time, by themselves.
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
    exception it raises is logged and the batch dropped (a bug must not stop the slot)."""

    def __init__(self, deliver: Callable[[list[T]], None], name: str) -> None:
        self._deliver = deliver
        self._cond = threading.Condition()
        self._items: list[T] = []
        self._busy = False  # a batch is being delivered
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
            self._cond.wait_for(
                lambda: (not self._items and not self._busy) or (until is not None and until())
            )

    def close(self) -> None:
        """Deliver what is queued, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._closing)
                if not self._items:
                    return
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
