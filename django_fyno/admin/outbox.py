"""The Fyno admin: outbox (see the package docstring)."""
