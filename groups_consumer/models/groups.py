"""Scopes and groups.

A group's rule is stored as one JSON tree (``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}`` and
``{"type", "operator", "config"}`` leaves). We store the tree rather than one row per criterion because a rule
is validated, versioned and replaced as a whole, nesting needs no recursive joins, and adding a criterion type
needs no migration. What the database must guarantee (unique names, one group per user and exclusive set)
is enforced by constraints; what a rule means is enforced by the criterion types when the group is saved.
"""

from django.db import models


class ScopeType(models.TextChoices):
    """Where a group's members come from."""

    INSTANCE = "instance", "every known user"
    ORG = "org", "users actively enrolled in a course of the organization"
    COURSE = "course", "users actively enrolled in the course"


class Scope(models.Model):
    """A population a group draws from: the instance, an organization or a course."""

    type = models.CharField(max_length=16, choices=ScopeType.choices)
    key = models.CharField(max_length=255, blank=True, help_text="org name or course key; empty for instance")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["type", "key"], name="scope_unique_type_key"),
            models.CheckConstraint(
                condition=models.Q(type="instance", key="") | (~models.Q(type="instance") & ~models.Q(key="")),
                name="scope_key_matches_type",
            ),
        ]

    def __str__(self) -> str:
        return self.type if self.type == ScopeType.INSTANCE else f"{self.type}:{self.key}"


class Group(models.Model):
    """A dynamic user group: a scope, a rule tree, and how it shares users with other groups."""

    name = models.CharField(max_length=255)
    scope = models.ForeignKey(Scope, on_delete=models.PROTECT, related_name="groups")
    enabled = models.BooleanField(default=True)
    frozen = models.BooleanField(default=False, help_text="members are kept as they are: no automatic changes")
    rule = models.JSONField(help_text="rule tree; validated by the criterion types on save")
    exclusive_set = models.CharField(
        max_length=255, null=True, blank=True,
        help_text="instance-wide name; a user is in at most one group of a set",
    )
    priority = models.IntegerField(default=0, help_text="within an exclusive set, the highest priority wins")
    refresh = models.DurationField(null=True, blank=True, help_text="full sync interval override")
    last_full_sync = models.DateTimeField(null=True, blank=True)
    last_sync_drift = models.JSONField(
        null=True, blank=True,
        help_text="differences the last sync found that events should already have made: counts and examples",
    )
    flips_checked_until = models.DateTimeField(
        null=True, blank=True, help_text="time-relative criteria have been re-evaluated for changes up to here",
    )
    last_event_at = models.DateTimeField(null=True, blank=True, help_text="time of the last event applied")
    last_event_id = models.CharField(max_length=255, blank=True, help_text="ce_id of the last event applied")
    broken_reason = models.TextField(blank=True, help_text="why the group cannot be evaluated; empty if it can")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "name"], name="group_unique_name_per_scope")]
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"


class DefinitionsVersion(models.Model):
    """One row counting changes of group definitions: every change increments it in its own transaction, and
    every event batch reads it first, under a share lock (``groups_consumer.engine.definitions_version``)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"group definitions, version {self.version}"
