"""Fair share in the pick: between users at the same priority, the next slot goes to the
user furthest below its share (scheduling.fair_share_order), not to the oldest job.

Off by default (`[server] fairshare = user`). The pick first finds the job it would take
anyway; fair share only chooses among the users who have dispatchable work at that job's
top-level priority, so priorities keep their meaning and a worker's rule lines keep their
order. Who has work is a scan of the queue, cached per process for a few seconds (a user
who just submitted waits that long for its share; a cached user without work costs one
index seek); running counts are read in the pick's own transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .. import scheduling
from ..store.base import Tx

Candidate = tuple[int, str, str, str]  # (id, h_key, title, limits), as Tx.first_ready gives


class FairShare:
    """The fair-share choice of a pick, with the per-process cache of users with work."""

    def __init__(
        self,
        weights: Mapping[str, float],
        clock: Callable[[], float],
        default_weight: float = 1.0,
        cache_seconds: float = 2.0,
        max_probes: int = 64,
    ):
        self.weights = dict(weights)
        self.default_weight = default_weight
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.max_probes = max_probes
        self._users: list[str] = []
        self._read_at = float("-inf")

    def users_with_work(self, tx: Tx) -> list[str]:
        """Users owning dispatchable leaves, from the cache while it is fresh."""
        now = self.clock()
        if now - self._read_at > self.cache_seconds:
            self._users = tx.ready_users()
            self._read_at = now
        return self._users

    def choose(
        self,
        tx: Tx,
        line: Sequence[int],
        full: Sequence[str],
        first: Candidate,
        blocked: Sequence[tuple[str, str]] = (),
    ) -> Candidate:
        """The candidate to take instead of `first` (the plain pick's), or `first`. `full`:
        limit texts without room; `blocked`: h_key ranges this worker may not take (a
        user whose first job there is blocked keeps the plain order)."""
        users = self.users_with_work(tx)
        if len(users) < 2:
            return first
        level = first[1][: scheduling.PRIO_LEN]  # the top-level priority
        running = tx.running_by_user()
        order = scheduling.fair_share_order(running, self.weights, users, self.default_weight)
        for user in order[: self.max_probes]:
            found = tx.first_ready_of(line, user, full)
            if found is None or found[1][: len(level)] != level:
                continue
            if any(lo <= found[1] < hi for lo, hi in blocked):
                continue
            return found  # the most deserving user with work at this priority
        return first
