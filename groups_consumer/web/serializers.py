"""Request and response shapes of the API, as the OpenAPI schema publishes them.

Group documents are validated by ``groups_consumer.definitions`` (the contract the CLI shares); the request
serializers here only describe them for the schema and take the raw document through.
"""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from groups_consumer import api
from groups_consumer.models import Cause, Group, Membership, MembershipChange, ScopeType
from groups_consumer.status import group_state


class ScopeSerializer(serializers.Serializer[Any]):
    """``{"type": "instance"}``, ``{"type": "org", "key": "DemoX"}`` or
    ``{"type": "course", "key": "course-v1:..."}``."""

    type = serializers.ChoiceField(choices=ScopeType.choices)
    key = serializers.CharField(required=False, allow_blank=True, max_length=255)


class GroupDocumentSerializer(serializers.Serializer[Any]):
    """A group definition: the JSON document of ``groups-consumer apply``."""

    name = serializers.CharField(max_length=255)
    scope = ScopeSerializer(required=False)
    rule = serializers.JSONField(help_text='{"all": [...]}, {"any": [...]}, {"not": {...}} or a criterion '
                                          '{"type", "operator", "config"}')
    enabled = serializers.BooleanField(required=False, default=True)
    frozen = serializers.BooleanField(required=False, default=False)
    exclusive_set = serializers.CharField(required=False, allow_null=True, max_length=255)
    priority = serializers.IntegerField(required=False, default=0, min_value=-(2**31), max_value=2**31 - 1)
    refresh = serializers.CharField(required=False, allow_null=True, help_text="ISO 8601 duration, e.g. P7D")


class GroupSerializer(serializers.ModelSerializer[Group]):
    """A stored group: its definition and its state."""

    scope = serializers.SerializerMethodField()
    refresh = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()

    class Meta:
        model = Group
        fields = ("id", "name", "scope", "rule", "enabled", "frozen", "exclusive_set", "priority", "refresh",
                  "state", "broken_reason", "last_full_sync", "last_event_at", "created", "modified")
        read_only_fields = fields

    @extend_schema_field(ScopeSerializer)
    def get_scope(self, group: Group) -> dict[str, str]:
        scope: dict[str, str] = api.definition_document(group)["scope"]
        return scope

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_refresh(self, group: Group) -> str | None:
        """The refresh override as an ISO 8601 duration."""
        return api.definition_document(group)["refresh"]  # type: ignore[no-any-return]

    @extend_schema_field(serializers.ChoiceField(choices=["enabled", "disabled", "frozen", "broken"]))
    def get_state(self, group: Group) -> str:
        """enabled, disabled, frozen or broken."""
        return group_state(group, group.broken_reason)


class GroupSummarySerializer(serializers.ModelSerializer[Group]):
    """A group named in another answer."""

    scope = serializers.CharField(source="scope.__str__", read_only=True)

    class Meta:
        model = Group
        fields = ("id", "name", "scope", "exclusive_set")
        read_only_fields = fields


class MemberSerializer(serializers.ModelSerializer[Membership]):
    """One member of a group."""

    class Meta:
        model = Membership
        fields = ("user_id", "joined_at")
        read_only_fields = fields


class UserGroupSerializer(serializers.ModelSerializer[Membership]):
    """One group a user is in."""

    group = GroupSummarySerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ("group", "joined_at")
        read_only_fields = fields


class ChangeSerializer(serializers.ModelSerializer[MembershipChange]):
    """One entry of the membership change log."""

    group = GroupSummarySerializer(read_only=True)

    class Meta:
        model = MembershipChange
        fields = ("id", "user_id", "group", "kind", "at", "cause", "cause_id")
        read_only_fields = fields


class ChangeFilterSerializer(serializers.Serializer[Any]):
    """Filters of the change log: a time range ``[since, until)``, a cause and a kind."""

    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    cause = serializers.ChoiceField(choices=Cause.choices, required=False)
    kind = serializers.ChoiceField(choices=MembershipChange.Kind.choices, required=False)


class GroupFilterSerializer(serializers.Serializer[Any]):
    """Filters of the group list."""

    scope = serializers.CharField(required=False, help_text="instance, org:KEY or course:KEY")
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    frozen = serializers.BooleanField(required=False, allow_null=True, default=None)
    broken = serializers.BooleanField(required=False, allow_null=True, default=None)
    exclusive_set = serializers.CharField(required=False)


class ChangeSampleSerializer(serializers.Serializer[Any]):
    """How many users would join and leave a group, with the first few of each."""

    joined = serializers.IntegerField()
    left = serializers.IntegerField()
    joined_sample = serializers.ListField(child=serializers.IntegerField())
    left_sample = serializers.ListField(child=serializers.IntegerField())


class PreviewSerializer(serializers.Serializer[Any]):
    """What saving a definition would do now (nothing is saved)."""

    group = serializers.CharField()
    members_before = serializers.IntegerField()
    members_after = serializers.IntegerField()
    qualifying = serializers.IntegerField(help_text="users of the scope the rule matches, before exclusivity")
    sample = serializers.ListField(child=serializers.IntegerField(), help_text="members after saving, lowest ids")
    changes = ChangeSampleSerializer()
    siblings = serializers.DictField(child=ChangeSampleSerializer(),
                                     help_text="other groups whose members would change, by name")


class ExplainQuerySerializer(serializers.Serializer[Any]):
    """The query of ``explain``: which user."""

    user = serializers.IntegerField(min_value=1, max_value=api.MAX_USER_ID, help_text="LMS user id")


class ExplanationSerializer(serializers.Serializer[Any]):
    """Why a user is or is not in a group."""

    user_id = serializers.IntegerField()
    group = serializers.CharField()
    is_member = serializers.BooleanField()
    qualifies = serializers.BooleanField()
    lines = serializers.ListField(child=serializers.CharField())


class NotSyncedSerializer(serializers.Serializer[Any]):
    """A requested group a sync left alone, and why."""

    group = serializers.CharField()
    reason = serializers.CharField()


class SyncReportSerializer(serializers.Serializer[Any]):
    """What a sync did."""

    run_id = serializers.CharField()
    groups = serializers.ListField(child=serializers.CharField())
    users_scanned = serializers.IntegerField()
    joined = serializers.IntegerField()
    left = serializers.IntegerField()
    seconds = serializers.FloatField()
    not_synced = NotSyncedSerializer(many=True)


class ManualListSerializer(serializers.Serializer[Any]):
    """A manual group's new users: ids or usernames, as the first column of the CLI's CSV."""

    users = serializers.ListField(child=serializers.CharField(allow_blank=True, max_length=255), max_length=100_000)
    append = serializers.BooleanField(required=False, default=False)


class SkippedRowSerializer(serializers.Serializer[Any]):
    """A row of a manual list that resolved to nobody."""

    line = serializers.IntegerField()
    value = serializers.CharField()
    reason = serializers.CharField()


class ManualUpdateSerializer(serializers.Serializer[Any]):
    """What a manual list update did."""

    user_ids = serializers.IntegerField()
    skipped = SkippedRowSerializer(many=True)
    sync = SyncReportSerializer()


class CriterionSerializer(serializers.Serializer[Any]):
    """A criterion type, as a form builder needs it; an unavailable one carries only its name and ``error``."""

    name = serializers.CharField()
    available = serializers.BooleanField()
    error = serializers.CharField(required=False)
    package = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    operators = serializers.ListField(child=serializers.CharField(), required=False)
    scopes = serializers.ListField(child=serializers.CharField(), required=False)
    events = serializers.ListField(child=serializers.CharField(), required=False)
    refresh_s = serializers.FloatField(required=False)
    update_methods = serializers.ListField(child=serializers.CharField(), required=False)
    time_relative = serializers.BooleanField(required=False)
    config_schema = serializers.DictField(required=False)
    ui_metadata = serializers.ListField(child=serializers.DictField(), required=False)
