"""Who may do what over the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

if TYPE_CHECKING:  # rest_framework.views imports the settings that name this module
    from rest_framework.request import Request
    from rest_framework.views import APIView

#: The Django permission that lets a non-staff user change groups, sync them and edit manual lists.
EDIT_PERMISSION = "groups_consumer.change_group"


def is_editor(user: Any) -> bool:
    """Staff, or a user granted ``groups_consumer.change_group``."""
    return bool(user and user.is_authenticated and (user.is_staff or user.has_perm(EDIT_PERMISSION)))


class ReadAuthenticatedWriteEditors(BasePermission):
    """Reading needs an authenticated client (JWT, token or session); everything else needs an editor."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or is_editor(user)
