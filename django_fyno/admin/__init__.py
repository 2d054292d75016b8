"""The staff face: django-fyno in the Django admin.

One module per part, each registering its own admin classes:

- :mod:`.profiles`: the profile mirrors, and their actions (sync, compare, delete);
- :mod:`.outbox`: outbox messages (retry, cancel) and their delivery reports;
- :mod:`.suppressions`: the suppression lists, written through to Fyno;
- :mod:`.preferences`: a user's subscriptions, seen and changed by staff;
- :mod:`.health`: the health page, per workspace;
- :mod:`.users`: a user's Fyno state on the project's own user admin (an inline
  and a mixin the project opts into; the project's ``UserAdmin`` is never replaced).

Every action and view checks django-fyno's own permissions (``django_fyno.sync_profiles``,
``manage_suppressions``, ``edit_preferences``, ``manage_outbox``, ``view_health``), and
turns Fyno's errors into admin messages (:mod:`.common`). They call the domain
(:mod:`django_fyno.sync`, :mod:`django_fyno.outbox`…), never write its rows behind its back.
"""

from django_fyno.admin import health, outbox, preferences, profiles, suppressions, users

__all__ = ["health", "outbox", "preferences", "profiles", "suppressions", "users"]
