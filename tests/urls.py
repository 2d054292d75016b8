"""URLconf for tests that need django-fyno's views (``@pytest.mark.urls("tests.urls")``)."""

from django.urls import include, path

urlpatterns = [
    path("fyno/", include("django_fyno.urls")),
]
