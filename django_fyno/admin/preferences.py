"""The Fyno admin: preferences (see the package docstring)."""
