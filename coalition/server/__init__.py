"""The CherryPy server: routes, auth tool, static page, discovery, monitors."""
