"""What the staff group editor (an admin page, ``static/groups_consumer/group_editor.js``) starts from: the
document it edits and the API routes it calls. The page itself only talks to the REST API, so a definition is
validated, previewed and saved exactly as any other client's."""

from typing import Any

from django.urls import reverse

from groups_consumer import api
from groups_consumer.models import Group

#: A new group's document: every key of the definition, at its default.
NEW_DOCUMENT: dict[str, Any] = {"name": "", "scope": {"type": "instance"}, "rule": {"all": []},
                                "enabled": True, "frozen": False, "exclusive_set": None, "priority": 0,
                                "refresh": None}


def editor_config(group: Group | None) -> dict[str, Any]:
    """The page's starting point: the group (None for a new one), its document and the routes it uses."""
    return {
        "group_id": group.pk if group else None,
        "document": api.definition_document(group) if group else NEW_DOCUMENT,
        "urls": {
            "criteria": reverse("criteria"),
            "groups": reverse("group-list"),
            "preview": reverse("group-preview-new"),
            "edit": reverse("admin:groups_consumer_group_edit", kwargs={"group_id": 0}),
            "groups_admin": reverse("admin:groups_consumer_group_changelist"),
        },
    }
