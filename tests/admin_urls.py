"""The URLconf of the staff-face tests: the admin, and django-fyno's own URLs."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("fyno/", include("django_fyno.urls")),
]
