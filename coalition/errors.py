"""Errors the use cases raise, mapped to HTTP statuses at the edges."""

from __future__ import annotations


class NotFound(LookupError):
    """An id or name that does not exist (a 404)."""
