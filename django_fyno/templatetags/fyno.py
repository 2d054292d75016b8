"""Template tags of django-fyno: ``{% load fyno %}``.

``{% fyno_preferences %}`` renders the signed-in user's preference form inside any
page of the project (it needs ``request`` in the template context, as Django's
``request`` context processor puts it). The form posts to
``django_fyno:preferences``, which saves it and shows the result. Nothing is
rendered for an anonymous user; when Fyno cannot be reached, a message says so
instead of the form.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString

from django_fyno.forms import PreferenceForm

__all__ = ["FORM_TEMPLATE", "fyno_preferences"]

FORM_TEMPLATE = "django_fyno/partials/preference_form.html"

register = template.Library()


@register.simple_tag(takes_context=True)
def fyno_preferences(context: template.Context, id_prefix: str = "fyno-pref") -> SafeString:
    """The signed-in user's preference form; ``""`` for anyone else.

    ``id_prefix`` prefixes the form's HTML ids (for a page with something else
    using ``fyno-pref-*`` ids).
    """
    request: Any = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return SafeString("")
    form = PreferenceForm.for_user(user, id_prefix=id_prefix)
    form.load()
    # Rendered with the request: its CSRF token goes in the form.
    return render_to_string(
        FORM_TEMPLATE,
        {"form": form, "form_action": reverse("django_fyno:preferences")},
        request=request,
    )
