"""Effective tag sets: a process-wide cache of committed ones, and a per-transaction view.

Tag sets are never changed nor deleted, so an id once committed keeps its meaning and may be
cached for good. The cache learns only after a commit (from the view of a transaction that
committed): a rolled-back transaction's tag sets never reach it, which matters on SQLite,
where a rolled-back id is handed out again to the next new tag set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from .. import scheduling
from ..scheduling import Shape
from ..store.base import Tx

_NOTHING = Shape(frozenset())


class TagCache:
    """Committed tag-set id -> shape (effective tags and request), shared by threads.
    Reloaded from the database at least every `max_age` seconds (other servers create tag
    sets too)."""

    def __init__(self, max_age: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._by_id: dict[int, Shape] = {}
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._monotonic = monotonic
        self.generation = 0  # bumped whenever the map grows: keys caches derived from it
        self.max_age = max_age

    def committed(self) -> Mapping[int, Shape]:
        """The cached map (read-only by convention)."""
        return self._by_id

    def stale(self) -> bool:
        """Whether the map is due for a reload."""
        return self._monotonic() - self._loaded_at > self.max_age

    def view(self, tx: Tx) -> TagView:
        """A view for one transaction."""
        return TagView(self, tx)

    def load(self, tx: Tx) -> Mapping[int, Shape]:
        """Reload from a read transaction (committed rows only) and return the map."""
        view = self.view(tx)
        view.reload()
        self.learn(view)
        return self._by_id

    def learn(self, view: TagView) -> None:
        """Merge what a committed transaction saw or created."""
        if not view.local and not view.reloaded:
            return
        with self._lock:
            if any(k not in self._by_id for k in view.local):
                self._by_id = {**self._by_id, **view.local}
                self.generation += 1
            if view.reloaded:
                self._loaded_at = self._monotonic()


class TagView:
    """The tag sets one transaction sees: the committed cache plus what it read or created
    itself (kept here until the commit)."""

    def __init__(self, cache: TagCache, tx: Tx):
        self._cache = cache
        self._tx = tx
        self.local: dict[int, Shape] = {}
        self.reloaded = False

    def tags(self, tagset_id: int) -> frozenset[str]:
        """The tags of a tag-set id (frozenset() for 0 or an unknown id)."""
        return self.shape(tagset_id).tags

    def shape(self, tagset_id: int) -> Shape:
        """The tags and request of a tag-set id (no tags, no request for 0 or an unknown id)."""
        found = self.local.get(tagset_id)
        if found is None:
            found = self._cache.committed().get(tagset_id)
        if found is None and tagset_id:
            self.reload()
            found = self.local.get(tagset_id)
        return found or _NOTHING

    def created(self, tagset_id: int, shape: Shape) -> None:
        """Note a tag set this transaction found or created."""
        if tagset_id not in self._cache.committed():
            self.local[tagset_id] = shape

    def known(self, tagset_id: int) -> bool:
        """Whether the id is in the cache or this view."""
        return tagset_id in self.local or tagset_id in self._cache.committed()

    def reload(self) -> None:
        """Read every tag set through the transaction."""
        cached = self._cache.committed()
        for tid, text in self._tx.tagsets().items():
            if tid not in cached:
                self.local[tid] = scheduling.shape_from_text(text)
        self.reloaded = True

    def current(self) -> tuple[Mapping[int, Shape], int | None]:
        """Every tag set, reloading when the cache is stale; with the cache generation the
        map belongs to, or None when it holds rows not committed yet (not to be cached)."""
        if self._cache.stale():
            self.reload()
        if not self.local:
            return self._cache.committed(), self._cache.generation
        return {**self._cache.committed(), **self.local}, None
