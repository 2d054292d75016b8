from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from django_fyno.admin.users import FynoUserAdminMixin

from .models import User


@admin.register(User)
class DemoUserAdmin(FynoUserAdminMixin, UserAdmin):
    """Django's UserAdmin, plus the user's Fyno state (django-fyno's opt-in mixin)."""

    fieldsets = (*UserAdmin.fieldsets, ("Contact", {"fields": ("phone", "timezone")}))
    add_fieldsets = (*UserAdmin.add_fieldsets, ("Contact", {"fields": ("email", "phone")}))
