"""The Fyno admin: health (see the package docstring)."""
