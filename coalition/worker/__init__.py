"""The Coalition worker agent: asks the server for jobs, runs them, streams their logs back.

It speaks HTTP only (docs/protocol.md) and imports nothing from `coalition.server` or
`coalition.store`, so a render node needs neither CherryPy nor a database driver.
"""
