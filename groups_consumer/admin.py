"""Django admin: read-mostly views of groups, memberships and their history."""

from django.contrib import admin

from groups_consumer.models import CourseFact, Group, Membership, MembershipChange, Scope, UserFact


@admin.register(Scope)
class ScopeAdmin(admin.ModelAdmin):
    """Scopes."""

    list_display = ("type", "key")


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    """Groups; edit definitions through ``groups-consumer apply`` or the API, which validate them."""

    list_display = ("name", "scope", "enabled", "exclusive_set", "priority", "last_full_sync", "broken_reason")
    list_filter = ("enabled", "scope__type")
    search_fields = ("name",)
    readonly_fields = ("rule", "last_full_sync", "broken_reason")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Current memberships."""

    list_display = ("group", "user_id", "joined_at")
    search_fields = ("user_id",)
    list_select_related = ("group",)


@admin.register(MembershipChange)
class MembershipChangeAdmin(admin.ModelAdmin):
    """The membership change log."""

    list_display = ("at", "group", "user_id", "kind", "cause", "cause_id")
    list_filter = ("kind", "cause")
    search_fields = ("user_id", "cause_id")


admin.site.register(UserFact)
admin.site.register(CourseFact)
