"""The Fyno admin: profiles (see the package docstring)."""
