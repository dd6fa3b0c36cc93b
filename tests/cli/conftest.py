"""The CLI tests reuse the worker tests' real worker processes."""

from tests.worker.conftest import make_worker  # noqa: F401 - a fixture, re-exported
