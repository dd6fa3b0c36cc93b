"""Fixtures of the login and permission tests: a private slapd and servers using it."""

from tests.authfarm import ldap_farm, make_auth_server, own_slapd, slapd  # noqa: F401
