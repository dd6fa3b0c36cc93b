"""The SQL of Open Job Description jobs: each submission's template and parameter values.

A mixin of SqlTx (store/sql.py), kept apart to keep each module small; same rules: `?`
placeholders, values as parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Row


class OpenJDSql:
    """The `openjd_jobs` table (mixed into SqlTx)."""

    if TYPE_CHECKING:  # SqlTx's plumbing, which these methods use

        def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
        def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def put_openjd_job(self, job_id: int, template: str, parameters: str, now: float) -> None:
        """Store the template (JSON text) and parameter values (JSON text) of the OpenJD job
        whose top group is `job_id` (created in the same transaction)."""
        self.execute(
            "INSERT INTO openjd_jobs (job_id, template, parameters, created_at) VALUES (?, ?, ?, ?)",
            (job_id, template, parameters, now),
        )

    def openjd_job(self, job_id: int) -> Row | None:
        """The row of an OpenJD job (job_id, template, parameters, created_at), or None."""
        return self._one("SELECT * FROM openjd_jobs WHERE job_id = ?", (job_id,))
