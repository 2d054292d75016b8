"""The Fyno admin: suppressions (see the package docstring)."""
