"""Errors as API answers: the same messages as the command line, in a shape clients can act on.

An invalid definition is a 400 whose ``errors`` name each bad field by its path (``rule.all[0].config.percent``)
with the message; an unknown group or user is a 404; a group another process is syncing is a 409.
"""

from typing import Any

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
