"""pytest plugin shipped with django-fyno (registered through the ``pytest11`` entry point).

It imports the emulator lazily, inside fixtures, so that a project that
installs django-fyno without the ``emulator`` extra still runs its tests.
"""
