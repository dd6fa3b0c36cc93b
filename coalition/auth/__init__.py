"""Who may do what: LDAP login and permissions, login sessions, the command whitelist.

Nothing here knows about HTTP: `coalition.server.auth` adapts these pieces to the routes.
Login sessions are a use case over the database: `coalition.usecases.access`.

* `directory`   LDAP (ldap3): password checks and the CRUD permission templates
* `policy`      pure decisions: may this login take this action on jobs owned by these users
* `cache`       small bounded TTL caches (LDAP answers are cached briefly)
* `whitelist`   the `commandwhitelist` rule sets
* `credentials` HTTP Basic and cookie parsing, login name checks
* `bootstrap`   a new coalition.ini with a random worker token (`coalition-server --init`)
"""
