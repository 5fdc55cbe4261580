"""The web process's routes: the REST API under ``/api/v1/``, the admin under ``/admin/`` and ``/health``."""

from django.contrib import admin
from django.urls import include, path

from groups_consumer.web.health import health

handler404 = "groups_consumer.web.errors.not_found"
urlpatterns = [
    path("health", health, name="health"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("groups_consumer.web.urls")),
]
