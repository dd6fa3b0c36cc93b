"""Fixtures of the login and permission tests: a private slapd and servers using it."""

from tests.authfarm import ldap_farm, make_auth_server, own_slapd, slapd  # noqa: F401
from tests.worker.conftest import make_worker  # noqa: E402, F401 - a fixture, re-exported
