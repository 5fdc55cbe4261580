"""Pagination of the API's lists.

Members and change logs page by cursor (keyset): a page is the rows after the last one seen, read from an index,
so page 500 of a 1M-member group costs what page 1 costs. Groups are few; they page by number.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework import pagination, serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request


class GroupPages(pagination.PageNumberPagination):
    """Groups, 100 per page by default (``page_size`` up to 1000)."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class ValidatedCursor(pagination.CursorPagination):
    """A cursor that is not one of ours is a bad query parameter (400), not a missing page."""

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise serializers.ValidationError({self.cursor_query_param: [str(exc.detail)]}) from exc


class MemberCursor(ValidatedCursor):
    """A group's members in user-id order, on the (group, user) unique index."""

    ordering = "user_id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class ChangeCursor(ValidatedCursor):
    """Change-log entries newest first, on the (group, at) and (user, at) indexes."""

    ordering = ("-at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


CURSOR_PARAMETERS = [
    OpenApiParameter("cursor", str, description="the `next` or `previous` link's cursor"),
    OpenApiParameter("page_size", int, description="rows per page (default 100, at most 1000)"),
]


def page_of(item: type[serializers.Serializer[Any]], name: str) -> type[serializers.Serializer[Any]]:
    """The schema of one cursor page of ``item`` rows, as component ``name``."""
    fields: dict[str, Any] = {
        "next": serializers.URLField(allow_null=True), "previous": serializers.URLField(allow_null=True),
        "results": item(many=True), "__doc__": f"One page of {item.__name__.removesuffix('Serializer')} rows.",
    }
    return type(name, (serializers.Serializer,), fields)
