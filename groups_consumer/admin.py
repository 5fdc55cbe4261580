"""Django admin: groups are created and edited in the staff editor (which saves through the API, so every
definition is validated); memberships and their history are read-only lists."""

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from groups_consumer.models import CourseFact, Group, Membership, MembershipChange, Scope, UserFact


@admin.register(Scope)
class ScopeAdmin(admin.ModelAdmin):
    """Scopes."""

    list_display = ("type", "key")


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    """Groups; adding or changing one opens the editor (``editor/``), never the raw model form (which would
    bypass validation)."""

    list_display = ("name", "scope", "enabled", "exclusive_set", "priority", "last_full_sync", "broken_reason")
    list_filter = ("enabled", "scope__type")
    search_fields = ("name",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never here: the admin would list every membership first and delete outside the group's sync lease,
        without re-deciding its exclusive set; the editor's Delete goes through the API."""
        return False

    def get_urls(self) -> list[URLPattern]:
        """The editor's pages before the admin's own."""
        editor = self.admin_site.admin_view(self.editor_view)
        return [path("editor/", editor, name="groups_consumer_group_editor"),
                path("<int:group_id>/editor/", editor, name="groups_consumer_group_edit"),
                *super().get_urls()]

    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The editor, for a new group."""
        return redirect("admin:groups_consumer_group_editor")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponseRedirect:
        """The editor, for this group."""
        if not object_id.isdigit():
            raise Http404("no such group")
        return redirect("admin:groups_consumer_group_edit", group_id=int(object_id))

    def editor_view(self, request: HttpRequest, group_id: int | None = None) -> TemplateResponse:
        """The group editor: a form built from the criteria of the scope; previews and saves go to the API."""
        from groups_consumer.web.staff_editor import editor_config  # loads the API: only when the editor opens

        if not self.has_view_permission(request):
            raise PermissionDenied
        group = get_object_or_404(Group.objects.select_related("scope"), pk=group_id) if group_id else None
        context = {**self.admin_site.each_context(request), "opts": self.opts, "group": group,
                   "title": f"Edit group {group}" if group else "Add group",
                   "editor_config": editor_config(group)}
        return TemplateResponse(request, "admin/groups_consumer/group/editor.html", context)


class ReadOnlyAdmin(admin.ModelAdmin):
    """A list nobody edits here: rows change only through the service's own paths."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Never."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never."""
        return False


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    """Current memberships, searchable by user id and group name."""

    list_display = ("group", "user_id", "joined_at", "exclusive_set")
    list_filter = ("group__scope__type", "exclusive_set")
    search_fields = ("=user_id", "group__name")
    list_select_related = ("group__scope",)


@admin.register(MembershipChange)
class MembershipChangeAdmin(ReadOnlyAdmin):
    """The membership change log, searchable by user id, group name and cause id (event or sync run)."""

    list_display = ("at", "group", "user_id", "kind", "cause", "cause_id")
    list_filter = ("kind", "cause")
    search_fields = ("=user_id", "group__name", "cause_id")
    list_select_related = ("group__scope",)


admin.site.register(UserFact)
admin.site.register(CourseFact)
