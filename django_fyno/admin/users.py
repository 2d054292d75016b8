"""The Fyno admin: users (see the package docstring)."""
