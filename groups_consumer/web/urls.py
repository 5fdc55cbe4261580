"""Routes of the REST API (mounted under ``/api/v1/``), its OpenAPI schema and browsable docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from groups_consumer.web import schema, views  # noqa: F401  (schema registers the JWT scheme)

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("groups", views.GroupViewSet, basename="group")

urlpatterns = [
    path("", include(router.urls)),
    path("criteria/", views.CriteriaView.as_view(), name="criteria"),
    path("status/", views.StatusView.as_view(), name="status"),
    path("users/<int:user_id>/groups/", views.UserGroupsView.as_view(), name="user-groups"),
    path("users/<int:user_id>/changes/", views.UserChangesView.as_view(), name="user-changes"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]
