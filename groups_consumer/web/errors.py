"""Errors as API answers: the same messages as the command line, in a shape clients can act on.

An invalid definition is a 400 whose ``errors`` name each bad field by its path (``rule.all[0].config.percent``)
with the message; an unknown group or user is a 404; a group another process is syncing is a 409.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from groups_consumer.errors import AmbiguousGroup, DefinitionError, GroupsError, UnknownGroup


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the project's own errors."""
    if isinstance(exc, DefinitionError):
        return Response({"detail": str(exc), "errors": [{"field": field, "message": message}
                                                        for field, message in exc.errors]},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (UnknownGroup, AmbiguousGroup)):
        return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, GroupsError):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 for a path no route matches (``/api/v1/groups/abc/``, ``/api/v1/users/x/groups/``): JSON
    under ``/api/``, as every other answer of the API; Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return page_not_found(request, exception)
