"""The REST API's views: parse the request, call ``groups_consumer.api``, shape the answer.

Every rule lives in ``api``; what is here is HTTP: filters from query strings, pagination, status codes, the
OpenAPI description of each operation.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups_consumer import api
from groups_consumer.engine.full_sync import SyncReport
from groups_consumer.models import Group
from groups_consumer.status import collect
from groups_consumer.web import serializers as s
from groups_consumer.web.pagination import CURSOR_PARAMETERS, ChangeCursor, GroupPages, MemberCursor, page_of
from groups_consumer.web.parsers import CsvParser, LimitedJSONParser

INVALID = OpenApiResponse(OpenApiTypes.OBJECT, description="invalid input: `errors` names each field by its path")
NOT_FOUND = OpenApiResponse(OpenApiTypes.OBJECT, description="no such group")
NO_PAGE = OpenApiResponse(OpenApiTypes.OBJECT, description="no such page")
NO_USER = OpenApiResponse(OpenApiTypes.OBJECT, description="not a user id")
BUSY = OpenApiResponse(OpenApiTypes.OBJECT, description="another process is syncing the group; retry later")
MEMBER_PAGE = page_of(s.MemberSerializer, "MemberPage")
CHANGE_PAGE = page_of(s.ChangeSerializer, "ChangePage")
#: How long a request waits for a group another process is syncing before answering 409.
LEASE_WAIT_S = 10.0
#: A user id in a path: digits only (anything else is no such path: 404 before authentication).
USER_ID = OpenApiParameter("user_id", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                           OpenApiParameter.PATH, description="LMS user id")
SCOPE = OpenApiParameter("scope", str, description="instance, org:KEY or course:KEY")


class CriteriaView(APIView):
    """The criterion types available in a scope, with what a form builder needs."""

    @extend_schema(parameters=[SCOPE], responses={200: s.CriterionSerializer(many=True), 400: INVALID})
    def get(self, request: Request) -> Response:
        """Criterion types (in ``scope``, if given): operators, events, refresh, config schema, UI metadata;
        unavailable ones (broken or ambiguous plugins) with the reason."""
        scope = api.parse_scope(request.query_params.get("scope"))
        return Response(s.CriterionSerializer(api.criterion_catalog(scope), many=True).data)


class StatusView(APIView):
    """The operator's view: ``groups-consumer status --json``."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """Per group: state, members, last event, last sync, staleness, drift; per partition: lag, dead letters."""
        return Response(collect(timezone.now()).as_json())


def _document(request: Request) -> Any:
    """The raw JSON document of a request (validated by ``api``, which names the bad fields)."""
    return request.data


def _sync_answer(report: SyncReport, groups: list[Group]) -> dict[str, Any]:
    return {"run_id": report.run_id, "groups": report.groups, "users_scanned": report.users_scanned,
            "joined": report.changes.joined, "left": report.changes.left, "seconds": round(report.seconds, 3),
            "not_synced": [{"group": group, "reason": reason} for group, reason in api.not_synced(groups, report)]}


@extend_schema_view(
    list=extend_schema(parameters=[s.GroupFilterSerializer], responses={200: s.GroupSerializer(many=True),
                                                                         400: INVALID, 404: NO_PAGE}),
    retrieve=extend_schema(responses={200: s.GroupSerializer, 404: NOT_FOUND}),
    create=extend_schema(request=s.GroupDocumentSerializer, responses={201: s.GroupSerializer, 400: INVALID,
                                                                        409: BUSY}),
    update=extend_schema(request=s.GroupDocumentSerializer, responses={200: s.GroupSerializer, 400: INVALID,
                                                                        404: NOT_FOUND, 409: BUSY}),
    partial_update=extend_schema(request=OpenApiTypes.OBJECT, responses={200: s.GroupSerializer, 400: INVALID,
                                                                          404: NOT_FOUND, 409: BUSY}),
    destroy=extend_schema(responses={204: None, 404: NOT_FOUND, 409: BUSY}),
)
class GroupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Group]):
    """Groups: definitions (the JSON document of ``apply``), state, members, change log, previews, syncs.

    Saving a definition syncs the group (and the exclusive sets it touches) before answering, as ``apply``
    does. Deleting a group deletes its memberships and its change log; disable it to keep its history.
    """

    serializer_class = s.GroupSerializer
    pagination_class = GroupPages

    def get_queryset(self) -> QuerySet[Group]:
        if self.action != "list":
            return api.list_groups()
        filters = s.GroupFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = dict(filters.validated_data)
        return api.list_groups(**{**wanted, "scope": api.parse_scope(wanted.get("scope"))})

    def create(self, request: Request) -> Response:
        """Create a group from its document, then sync it."""
        group, _report = api.save_group(_document(request), wait_s=LEASE_WAIT_S)
        return Response(s.GroupSerializer(group).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: str | None = None) -> Response:
        """Replace a group's definition (name and scope included), then sync what changed."""
        group, _report = api.save_group(_document(request), self.get_object(), wait_s=LEASE_WAIT_S)
        return Response(s.GroupSerializer(group).data)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Change some keys of a group's document (top level: a new ``rule`` replaces the whole rule)."""
        group = self.get_object()
        patch = _document(request)
        if not isinstance(patch, dict):
            raise serializers.ValidationError({"(document)": ["a partial update is a JSON object"]})
        saved, _report = api.save_group({**api.definition_document(group), **patch}, group, wait_s=LEASE_WAIT_S)
        return Response(s.GroupSerializer(saved).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Delete a group with its memberships and change log."""
        api.delete_group(self.get_object(), wait_s=LEASE_WAIT_S)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: s.GroupSerializer, 404: NOT_FOUND, 409: BUSY})
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str | None = None) -> Response:
        """Disable a group: it is emptied (each removal logged) and no longer evaluated; its history stays."""
        group = self.get_object()
        saved, _report = api.save_group({**api.definition_document(group), "enabled": False}, group,
                                         wait_s=LEASE_WAIT_S)
        return Response(s.GroupSerializer(saved).data)

    @extend_schema(parameters=CURSOR_PARAMETERS, responses={200: MEMBER_PAGE, 400: INVALID, 404: NOT_FOUND})
    @action(detail=True, methods=["get"], pagination_class=MemberCursor)
    def members(self, request: Request, pk: str | None = None) -> Response:
        """Members in user-id order, by cursor: every page costs what the first one costs."""
        return self._page(api.members(self.get_object()), s.MemberSerializer)

    @extend_schema(parameters=[s.ChangeFilterSerializer, *CURSOR_PARAMETERS],
                   responses={200: CHANGE_PAGE, 400: INVALID, 404: NOT_FOUND})
    @action(detail=True, methods=["get"], pagination_class=ChangeCursor)
    def changes(self, request: Request, pk: str | None = None) -> Response:
        """The group's change log, newest first."""
        return self._page(api.changes(group=self.get_object(), **_change_filters(request)), s.ChangeSerializer)

    @extend_schema(parameters=[s.ExplainQuerySerializer],
                   responses={200: s.ExplanationSerializer, 400: INVALID, 404: NOT_FOUND})
    @action(detail=True, methods=["get"])
    def explain(self, request: Request, pk: str | None = None) -> Response:
        """Which criteria the user matches and how the exclusive set decides."""
        query = s.ExplainQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(s.ExplanationSerializer(asdict(api.explain(query.validated_data["user"],
                                                                   self.get_object()))).data)

    @extend_schema(request=None, responses={200: s.SyncReportSerializer, 404: NOT_FOUND, 409: BUSY})
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str | None = None) -> Response:
        """Full sync of the group and its exclusive siblings now (differences only; drift recorded)."""
        groups = [self.get_object()]
        return Response(s.SyncReportSerializer(_sync_answer(api.sync_groups(groups, wait_s=LEASE_WAIT_S), groups)).data)

    @extend_schema(request={"application/json": s.ManualListSerializer, "text/csv": OpenApiTypes.STR},
                   parameters=[OpenApiParameter("append", bool, description="text/csv: add instead of replace")],
                   responses={200: s.ManualUpdateSerializer, 400: INVALID, 404: NOT_FOUND, 409: BUSY})
    @action(detail=True, methods=["post"], parser_classes=[LimitedJSONParser, CsvParser])
    def manual(self, request: Request, pk: str | None = None) -> Response:
        """Replace (or append to) a manual group's users: ids or usernames, first column, as the CLI reads
        them (a header row and blank rows skipped; unknown usernames reported)."""
        group = self.get_object()
        if request.content_type.startswith("text/csv"):
            # an empty body reaches no parser: no rows, as an empty file
            rows = request.data.get("rows", [])
            append = request.query_params.get("append", "").lower() in {"1", "true", "yes"}
        else:
            body = s.ManualListSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            rows, append = [[value] for value in body.validated_data["users"]], body.validated_data["append"]
        update = api.update_manual_group(group, rows, append=bool(append), wait_s=LEASE_WAIT_S)
        return Response(s.ManualUpdateSerializer({
            "user_ids": update.user_ids, "sync": _sync_answer(update.sync, [group]),
            "skipped": [{"line": line, "value": value, "reason": reason} for line, value, reason in update.unknown],
        }).data)

    @extend_schema(operation_id="groups_preview_edit", request=s.GroupDocumentSerializer,
                   responses={200: s.PreviewSerializer, 400: INVALID, 404: NOT_FOUND})
    @action(detail=True, methods=["post"], url_path="preview")
    def preview_edit(self, request: Request, pk: str | None = None) -> Response:
        """What replacing this group's definition with the body would change now; nothing is saved."""
        return Response(s.PreviewSerializer(asdict(api.preview_definition(_document(request),
                                                                          self.get_object()))).data)

    @extend_schema(operation_id="groups_preview_new", request=s.GroupDocumentSerializer,
                   responses={200: s.PreviewSerializer, 400: INVALID})
    @action(detail=False, methods=["post"], url_path="preview")
    def preview_new(self, request: Request) -> Response:
        """What saving the body would do now (over the stored group of its scope and name, if any); nothing
        is saved."""
        return Response(s.PreviewSerializer(asdict(api.preview_definition(_document(request)))).data)

    def _page(self, rows: QuerySet[Any], serializer: type[serializers.ModelSerializer[Any]]) -> Response:
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(serializer(page, many=True).data)


class UserGroupsView(APIView):
    """The groups a user is in."""

    @extend_schema(parameters=[USER_ID], responses={200: s.UserGroupSerializer(many=True), 404: NO_USER})
    def get(self, request: Request, user_id: int) -> Response:
        """Every group the user is a member of, with when they joined."""
        return Response(s.UserGroupSerializer(api.user_memberships(user_id), many=True).data)


class UserChangesView(APIView):
    """A user's membership change log."""

    @extend_schema(parameters=[USER_ID, s.ChangeFilterSerializer, *CURSOR_PARAMETERS],
                   responses={200: CHANGE_PAGE, 400: INVALID, 404: NO_USER})
    def get(self, request: Request, user_id: int) -> Response:
        """The user's joins and leaves in every group, newest first."""
        pages = ChangeCursor()
        page = pages.paginate_queryset(api.changes(user_id=user_id, **_change_filters(request)), request, self)
        return pages.get_paginated_response(s.ChangeSerializer(page, many=True).data)


def _change_filters(request: Request) -> dict[str, Any]:
    filters = s.ChangeFilterSerializer(data=request.query_params)
    filters.is_valid(raise_exception=True)
    return dict(filters.validated_data)
