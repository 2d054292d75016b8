from accounts.views import sign_up
from demo import views
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("", views.home, name="home"),
    path("send/", views.send_test, name="send_test"),
    path("messages/<int:pk>/", views.message, name="message"),
    path("signup/", sign_up, name="signup"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # The preference center, the unsubscribe links and the delivery-report webhook.
    path("fyno/", include("django_fyno.urls")),
]
