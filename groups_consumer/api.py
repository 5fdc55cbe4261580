"""Orchestration API: every operation on groups goes through these functions (CLI and host apps alike)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.duration import duration_iso_string

from groups_consumer import users
from groups_consumer.definitions import GroupDefinition, ScopeDefinition, parse_definition, parse_documents
from groups_consumer.engine import rules
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.definitions_version import mark_definitions_changed
from groups_consumer.engine.evaluability import evaluation_error
from groups_consumer.engine.full_sync import SyncReport
from groups_consumer.engine.membership_writer import remove_members
from groups_consumer.engine.preview import NEW_GROUP_ID, Preview
from groups_consumer.engine.preview import preview as engine_preview
from groups_consumer.errors import AmbiguousGroup, DefinitionError, UnknownGroup
from groups_consumer.iteration import chunked
from groups_consumer.models import Cause, Group, Membership, MembershipChange, Scope, ScopeType, UserFact
from groups_consumer.plugins import registry
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.plugins.events import MAX_USERNAME
from groups_consumer.plugins.ui_metadata import ui_metadata
from groups_consumer.scheduling.sync_runner import group_leases, run_sync
from groups_consumer.shared import Query

log = structlog.get_logger(__name__)
#: The largest user id the database stores (bigint).
MAX_USER_ID = 2**63 - 1
#: How long an operator's sync waits for the same groups' sync running elsewhere before giving up.
OPERATOR_WAIT_S = 600.0


@dataclass
class ApplyReport:
    """What ``apply_definitions`` did, by group."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    sync: SyncReport | None = None


def validate_definition(doc: Any) -> GroupDefinition:
    """Validate a group document without saving it; DefinitionError names the offending field."""
    return parse_definition(doc)[0]


def apply_definitions(data: Any, *, sync: bool = True, now: datetime | None = None,
                      wait_s: float = OPERATOR_WAIT_S) -> ApplyReport:
    """Create or update groups from one document or a list (all or nothing), then sync what changed.

    A document updates the group of its scope and name, or creates it. Nothing is saved unless every
    definition is valid, within the definition limits, and evaluable by the database as a sync will run it
    (DefinitionError on ``rule`` with the database's message otherwise). Changing a group's exclusive set or
    disabling it removes its current members (logged as manual changes); the sync then re-adds whoever
    qualifies. Existing groups are changed under their sync leases (waiting up to ``wait_s`` seconds for a
    sync running elsewhere), so no sync goes on with their old definitions.
    """
    parsed = parse_documents(data)
    clock = _clock(now)
    for i, (definition, rule) in enumerate(parsed):
        _check_evaluable(definition, rule, clock(), f"[{i}].rule" if isinstance(data, list) else "rule")
    targets = [(definition, _stored(definition.scope, definition.name)) for definition, _rule in parsed]
    return _commit(targets, sync=sync, clock=clock, wait_s=wait_s)


def save_group(doc: Any, group: Group | None = None, *, sync: bool = True, now: datetime | None = None,
               wait_s: float = OPERATOR_WAIT_S) -> tuple[Group, ApplyReport]:
    """Create a group from a document (``group`` None) or replace ``group``'s definition with it (its name and
    scope may change); then sync it as ``apply`` does. A name already taken in the scope is refused."""
    definition, rule = parse_definition(doc)
    _check_evaluable(definition, rule, _clock(now)(), "rule")
    other = _stored(definition.scope, definition.name)
    if other is not None and (group is None or other.id != group.id):
        raise DefinitionError("name", f"a group named {definition.name!r} already exists in scope "
                                      f"{definition.scope.as_criterion_scope()} (id {other.id})")
    report = _commit([(definition, group)], sync=sync, clock=_clock(now), wait_s=wait_s)
    saved = Group.objects.select_related("scope").get(scope__type=definition.scope.type,
                                                      scope__key=definition.scope.key, name=definition.name)
    return saved, report


def definition_document(group: Group) -> dict[str, Any]:
    """A stored group as the JSON document that defines it (what ``apply`` and the API take)."""
    scope: dict[str, str] = {"type": group.scope.type}
    if group.scope.key:
        scope["key"] = group.scope.key
    return {"name": group.name, "scope": scope, "rule": group.rule, "enabled": group.enabled, "frozen": group.frozen,
            "exclusive_set": group.exclusive_set or None, "priority": group.priority,
            "refresh": duration_iso_string(group.refresh) if group.refresh is not None else None}


def delete_group(group: Group, *, wait_s: float = OPERATOR_WAIT_S) -> int:
    """Delete a group under its sync lease: its memberships and its change log go with it (disable a group
    instead to keep its history); subscribers to membership events are told every member left. The users it
    held in an exclusive set are re-decided among its siblings. Returns how many members it had."""
    sibling_set = group.exclusive_set
    with group_leases([group.id]).acquire(wait_s), transaction.atomic():
        mark_definitions_changed()
        members = len(remove_members(group, cause=Cause.MANUAL, cause_id="deleted", now=timezone.now()))
        log.info("group_deleted", group=group.name, scope=str(group.scope), members=members,
                 definition=definition_document(group))
        group.delete()
    if sibling_set:
        catalog = GroupCatalog.load(record_broken=False)
        run_sync([g.id for g in catalog.exclusive_set(sibling_set)], clock=timezone.now, record_drift=False,
                 wait_s=wait_s)
    return members


def _stored(scope: ScopeDefinition, name: str) -> Group | None:
    return Group.objects.filter(scope__type=scope.type, scope__key=scope.key, name=name).first()


def _commit(targets: list[tuple[GroupDefinition, Group | None]], *, sync: bool, clock: Callable[[], datetime],
            wait_s: float) -> ApplyReport:
    """Save definitions (each over its stored group, or as a new one) in one transaction under the stored
    groups' leases, then sync what changed and the exclusive sets groups left."""
    report, touched, left_sets = ApplyReport(), [], set()
    existing = [group.id for _definition, group in targets if group is not None]
    with group_leases(existing).acquire(wait_s), transaction.atomic():
        mark_definitions_changed()
        for definition, group in targets:
            saved, outcome, previous_set = _save(definition, group, clock())
            getattr(report, outcome).append(f"{saved.name} ({saved.scope})")
            if outcome != "unchanged":
                touched.append(saved.id)
            if previous_set and previous_set != saved.exclusive_set:
                left_sets.add(previous_set)  # users it released may now belong to a sibling
    if sync and touched:
        catalog = GroupCatalog.load(record_broken=False)
        released = [g.id for name in left_sets for g in catalog.exclusive_set(name)]
        report.sync = run_sync(touched + released, clock=clock, record_drift=False, wait_s=wait_s)
    return report


def _check_evaluable(definition: GroupDefinition, rule: rules.Node, now: datetime, field: str) -> None:
    """Refuse a definition the database cannot evaluate (as a sync will run it), with the database's message."""
    if reason := evaluation_error(_unsaved(definition, rule), now):
        raise DefinitionError(field, reason)


def _unsaved(definition: GroupDefinition, rule: rules.Node) -> CompiledGroup:
    """A definition compiled as a group, before it is saved (exclusive sets not applied)."""
    return CompiledGroup(id=NEW_GROUP_ID, name=definition.name, scope=definition.scope.as_criterion_scope(),
                         exclusive_set=None, priority=0, rule=rule)


def _clock(now: datetime | None) -> Callable[[], datetime]:
    """A fixed instant when the caller gives one (tests, replays of history), else the wall clock."""
    return (lambda: now) if now is not None else timezone.now


def _save(definition: GroupDefinition, group: Group | None, now: datetime) -> tuple[Group, str, str | None]:
    """Create or update one group; returns it, the outcome and its exclusive set before the change."""
    scope, _ = Scope.objects.get_or_create(type=definition.scope.type, key=definition.scope.key)
    values = definition.model_dump(include={"rule", "enabled", "frozen", "exclusive_set", "priority", "refresh"})
    if group is None:
        return Group.objects.create(scope=scope, name=definition.name, **values), "created", None
    values.update(scope=scope, name=definition.name)
    previous_set = group.exclusive_set
    if all(getattr(group, key) == value for key, value in values.items()) and not group.broken_reason:
        return group, "unchanged", previous_set
    if group.exclusive_set != definition.exclusive_set or not definition.enabled or group.scope_id != scope.id:
        clear_members(group, cause_id="redefined", now=now)
    for key, value in values.items():
        setattr(group, key, value)
    group.broken_reason = ""
    group.save()
    return group, "updated", previous_set


def clear_members(group: Group, *, cause_id: str, now: datetime | None = None) -> int:
    """Remove every member of a group, logging (and publishing) each as a manual change."""
    return len(remove_members(group, cause=Cause.MANUAL, cause_id=cause_id, now=now or timezone.now()))


@dataclass
class ManualUpdate:
    """What a CSV update of a manual group did; ``unknown`` lists (line number, value, why) of skipped rows."""

    user_ids: int
    unknown: list[tuple[int, str, str]]
    sync: SyncReport


def update_manual_group(group: Group, rows: Iterable[list[str]], *, append: bool, now: datetime | None = None,
                        wait_s: float = OPERATOR_WAIT_S) -> ManualUpdate:
    """Replace (or, with ``append``, extend) a manual group's users from CSV rows of user ids or usernames.

    The first column of each row is read; a header row and blank rows are skipped. Usernames resolve through
    the known users; rows that resolve to nobody are reported, not fatal. Changes are logged as manual.
    """
    rule = group.rule
    if set(rule) - {"type", "operator", "config"} or rule.get("type") != "manual":
        raise DefinitionError("rule", f"{group.name!r} is not a manual group (its rule is not one manual criterion)")
    if group.frozen:
        raise DefinitionError("frozen", f"{group.name!r} is frozen: apply it with \"frozen\": false first")
    ids: set[int] = set()
    usernames: dict[str, int] = {}  # the line each was first seen on
    unknown: list[tuple[int, str, str]] = []
    for line, row in enumerate(rows, start=1):
        value = row[0].strip() if row else ""
        if not value or (line == 1 and value.lower() in {"user_id", "username", "user"}):
            continue
        if (user_id := _user_id(value)) is not None:
            ids.add(user_id)
        else:
            usernames.setdefault(value, line)
    found = _user_ids_of(usernames)
    ids |= set(found.values())
    unknown += [(line, name, "no known user has this username") for name, line in usernames.items()
                if name not in found]
    if append:
        ids |= set(rule.get("config", {}).get("user_ids", []))
    definition = {"name": group.name, "scope": {"type": group.scope.type, "key": group.scope.key},
                  "rule": {**rule, "config": {"user_ids": sorted(ids)}}, "enabled": group.enabled,
                  "frozen": group.frozen, "exclusive_set": group.exclusive_set, "priority": group.priority,
                  "refresh": group.refresh}
    parse_definition(definition)
    with group_leases([group.id]).acquire(wait_s), transaction.atomic():
        mark_definitions_changed()
        group.rule = definition["rule"]
        group.save(update_fields=["rule", "modified"])
    report = run_sync([group.id], clock=_clock(now), method=UpdateMethod.MANUAL, cause=Cause.MANUAL,
                      record_drift=False, wait_s=wait_s)
    return ManualUpdate(len(ids), sorted(unknown), report)


def _user_ids_of(usernames: Iterable[str]) -> dict[str, int]:
    """The known users among ``usernames``, by username; values no LMS username can be (too long, holding NUL,
    which PostgreSQL refuses in text) are known to no one. Looked up in slices: a CSV may list many thousands."""
    possible = [name for name in usernames if len(name) <= MAX_USERNAME and "\x00" not in name]
    return {name: user_id for names in chunked(possible, 5000)
            for name, user_id in UserFact.objects.filter(username__in=names).values_list("username", "user_id")}


def _user_id(value: str) -> int | None:
    """``value`` as an LMS user id: ASCII digits within the database's bigint (``"²".isdigit()`` is true, and
    ``int()`` refuses thousands of digits); None otherwise, for a username."""
    if value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= MAX_USER_ID:
        return int(value)
    return None


def preview_count(doc: Any, *, now: datetime | None = None) -> int:
    """How many users a definition would select now, before saving it (exclusive sets not applied)."""
    definition, rule = parse_definition(doc)
    now = now or timezone.now()
    _check_evaluable(definition, rule, now, "rule")
    members = _unsaved(definition, rule).members(now)
    if isinstance(members, Query):
        return members.count()
    return sum(len(members.resolve(within)) for within in users.ranges(20_000))


def preview_definition(doc: Any, group: Group | None = None, *, now: datetime | None = None) -> Preview:
    """What saving ``doc`` (as a new group, or over ``group``; else over the stored group of its scope and name)
    would do now: members before and after, who joins and leaves, and which exclusive siblings change. Nothing
    is saved and nothing is locked."""
    definition, rule = parse_definition(doc)
    now = now or timezone.now()
    _check_evaluable(definition, rule, now, "rule")
    if group is None:
        group = _stored(definition.scope, definition.name)
    proposed = CompiledGroup(
        id=group.id if group is not None else NEW_GROUP_ID, name=definition.name,
        scope=definition.scope.as_criterion_scope(), exclusive_set=definition.exclusive_set,
        priority=definition.priority, rule=rule if definition.enabled else None, frozen=definition.frozen,
        refresh=definition.refresh)
    moves = group is not None and (group.exclusive_set != definition.exclusive_set or not definition.enabled
                                   or (group.scope.type, group.scope.key) != (definition.scope.type,
                                                                              definition.scope.key))
    return engine_preview(GroupCatalog.load(record_broken=False), proposed, clears_members=moves,
                          left_set=group.exclusive_set if moves and group is not None else None, now=now)


def preview_documents(data: Any, *, now: datetime | None = None) -> list[Preview]:
    """``preview_definition`` of every document of a file, each against the stored groups (``apply --dry-run``)."""
    documents = data if isinstance(data, list) else [data]
    parse_documents(data)  # the whole file is refused as apply would refuse it
    return [preview_definition(doc, now=now) for doc in documents]


def parse_scope(text: str | None) -> ScopeDefinition | None:
    """``instance``, ``org:KEY`` or ``course:KEY`` as typed on the command line."""
    if text is None:
        return None
    scope_type, _, key = text.partition(":")
    try:
        return ScopeDefinition.model_validate({"type": scope_type, "key": key})
    except ValueError as exc:
        raise DefinitionError("scope", f"{text!r}: use instance, org:KEY or course:KEY ({exc})") from exc


def groups_matching(name: str | None = None, scope: ScopeDefinition | None = None) -> QuerySet[Group]:
    """Groups filtered by name and / or scope."""
    groups = Group.objects.select_related("scope")
    if name is not None:
        groups = groups.filter(name=name)
    if scope is not None:
        groups = groups.filter(scope__type=scope.type, scope__key=scope.key)
    return groups


def find_group(name: str, scope: ScopeDefinition | None = None) -> Group:
    """The one group with that name (in that scope); UnknownGroup / AmbiguousGroup otherwise."""
    found = list(groups_matching(name, scope))
    if not found:
        raise UnknownGroup(f"no group named {name!r}" + (f" in scope {scope.as_criterion_scope()}" if scope else ""))
    if len(found) > 1:
        raise AmbiguousGroup(f"{name!r} exists in several scopes ({', '.join(str(g.scope) for g in found)}); "
                             "give --scope")
    return found[0]


def sync_groups(groups: Iterable[Group], *, now: datetime | None = None, chunk_size: int | None = None,
                wait_s: float = OPERATOR_WAIT_S) -> SyncReport:
    """Full sync, on an operator's request, of the given groups and their exclusive siblings, less those
    frozen or whose criteria exclude manual updates; records drift.

    Waits up to ``wait_s`` seconds for a sync of the same groups running elsewhere (LeaseUnavailable after).
    """
    return run_sync([g.id for g in groups], clock=_clock(now), method=UpdateMethod.MANUAL, chunk_size=chunk_size,
                    wait_s=wait_s)


def not_synced(groups: Iterable[Group], report: SyncReport) -> list[tuple[str, str]]:
    """The requested groups an operator's sync left alone, and why."""
    catalog = GroupCatalog.load(record_broken=False)
    skipped = []
    for group in groups:
        compiled = catalog.groups[group.id]
        if str(compiled) in report.groups:
            continue
        reason = ("frozen" if compiled.frozen else "disabled" if not group.enabled
                  else f"broken: {compiled.broken_reason}" if compiled.broken_reason
                  else "its criteria exclude manual updates")
        skipped.append((str(compiled), reason))
    return skipped


def list_groups(*, scope: ScopeDefinition | None = None, enabled: bool | None = None, frozen: bool | None = None,
                broken: bool | None = None, exclusive_set: str | None = None) -> QuerySet[Group]:
    """Groups in id order, filtered by whichever criteria are given."""
    given = {"enabled": enabled, "frozen": frozen, "exclusive_set": exclusive_set}
    groups = groups_matching(scope=scope).order_by("id").filter(
        **{field: value for field, value in given.items() if value is not None})
    if broken is not None:
        groups = groups.exclude(broken_reason="") if broken else groups.filter(broken_reason="")
    return groups


def members(group: Group) -> QuerySet[Membership]:
    """A group's memberships in user-id order."""
    return group.memberships.order_by("user_id")


def user_groups(user_id: int) -> QuerySet[Group]:
    """The groups a user is in."""
    return Group.objects.filter(memberships__user_id=user_id).select_related("scope")


def user_memberships(user_id: int) -> QuerySet[Membership]:
    """A user's memberships with their groups, in group-id order."""
    return Membership.objects.filter(user_id=user_id).select_related("group__scope").order_by("group_id")


@dataclass
class Explanation:
    """Why a user is or is not in a group."""

    user_id: int
    group: str
    is_member: bool
    qualifies: bool
    lines: list[str]


def explain(user_id: int, group: Group, *, now: datetime | None = None) -> Explanation:
    """Which leaves matched and which did not, and how the exclusive set decided."""
    now = now or timezone.now()
    catalog = GroupCatalog.load(record_broken=False)
    target = catalog.groups[group.id]
    is_member = Membership.objects.filter(group=group, user_id=user_id).exists()
    if not target.evaluable:
        reason = target.broken_reason or "the group is disabled"
        return Explanation(user_id, str(target), is_member, False, [f"not evaluated: {reason}"])
    siblings = catalog.exclusive_set(target.exclusive_set) if target.exclusive_set else [target]
    needed = set().union(*(g.backends for g in siblings if g.evaluable))
    snapshots = {name: catalog.readers.get(name).snapshots([user_id]) for name in needed}
    learner = snapshots["facts"].get(user_id)
    in_scope = learner is not None and learner.in_scope(target.scope.type, target.scope.key)
    lines = [f"{'✓' if in_scope else '✗'} scope {target.scope}"
             + ("" if learner is not None else ": user unknown (no event mentioned them yet)")]
    lines += rules.explain(target.evaluable_rule, snapshots, user_id, now)
    if target.frozen:
        lines.append("frozen: its members are kept as they are, whatever the rule says")
    qualifies = target.qualifies(snapshots, user_id, now)
    if target.exclusive_set:
        lines += _explain_exclusive_set(target, siblings, snapshots, user_id, now)
    return Explanation(user_id, str(target), is_member, qualifies, lines)


def _explain_exclusive_set(target: CompiledGroup, siblings: list[CompiledGroup], snapshots: rules.Snapshots,
                           user_id: int, now: datetime) -> list[str]:
    """The set's groups in precedence order and the decision events would make, by the rule
    ``exclusivity.arbitrate`` applies: a group events do not update keeps the users it holds; otherwise the
    first qualifying group wins."""
    held_by = Membership.objects.filter(user_id=user_id, exclusive_set=target.exclusive_set,
                                        group_id__in=[g.id for g in siblings if not g.updated_by(UpdateMethod.EVENTS)]
                                        ).values_list("group_id", flat=True).first()
    lines = [f"exclusive set {target.exclusive_set!r} (highest priority first, then name):"]
    qualifying = []
    for group in siblings:
        if not group.updated_by(UpdateMethod.EVENTS):
            why = ("frozen" if group.frozen else "broken" if group.broken_reason
                   else "disabled" if not group.evaluable else "updated by syncs only")
            status = f"{why}: keeps its members" + (" (holds this user)" if group.id == held_by else "")
        elif group.qualifies(snapshots, user_id, now):
            status = "qualifies"
            qualifying.append(group)
        else:
            status = "does not qualify"
        lines.append(f"  priority {group.priority:>4}  {group}: {status}")
    winner = next((g for g in siblings if g.id == held_by), None) or (qualifying[0] if qualifying else None)
    lines.append(f"  decision: {'user goes to ' + str(winner) if winner else 'no group of the set'}")
    return lines


def criterion_catalog(scope: ScopeDefinition | None = None) -> list[dict[str, Any]]:
    """Registered criterion types with their plugin package, operators, events, refresh frequency, update
    methods, config schema and form metadata; then the names that cannot be used (broken or ambiguous plugins,
    or types reading a fact source that is not installed or listening to events none consumes), with the
    reason. With ``scope``, only the types available there."""
    types = registry.criterion_types()
    problems = {name: problem for name in types.plugins if (problem := registry.criterion_problem(name))}
    listing: list[dict[str, Any]] = [
        {"name": name, "available": True, "package": plugin.source, "class": plugin.target,
         "description": plugin.obj.description, "operators": list(plugin.obj.operators),
         "scopes": sorted(s.value for s in plugin.obj.scopes), "events": sorted(plugin.obj.events),
         "backend": plugin.obj.backend, "refresh_s": plugin.obj.refresh.total_seconds(),
         "update_methods": sorted(m.value for m in plugin.obj.update_methods),
         "time_relative": plugin.obj.is_time_relative(), "config_schema": plugin.obj.config_schema(),
         "ui_metadata": ui_metadata(plugin.obj.Config)}
        for name, plugin in sorted(types.plugins.items())
        if name not in problems and (scope is None or scope.type in plugin.obj.scopes)]
    listing += [{"name": name, "available": False, "error": problems.get(name) or types.unavailable_reason(name)}
                for name in sorted({*types.conflicts, *types.failures, *problems})]
    return listing


def changes(*, group: Group | None = None, user_id: int | None = None, since: datetime | None = None,
            until: datetime | None = None, cause: str | None = None,
            kind: str | None = None) -> QuerySet[MembershipChange]:
    """The membership change log of a group and / or a user, newest first, in ``[since, until)``."""
    given = {"group": group, "user_id": user_id, "at__gte": since, "at__lt": until, "cause": cause, "kind": kind}
    return MembershipChange.objects.select_related("group__scope").order_by("-at", "-id").filter(
        **{condition: value for condition, value in given.items() if value is not None})


__all__ = ["ApplyReport", "Explanation", "Preview", "ScopeType", "apply_definitions", "changes", "clear_members",
           "criterion_catalog", "definition_document", "delete_group", "explain", "find_group", "groups_matching",
           "list_groups", "members", "not_synced", "parse_scope", "preview_count", "preview_definition",
           "preview_documents", "save_group", "sync_groups", "update_manual_group", "user_groups", "user_memberships",
           "validate_definition"]
