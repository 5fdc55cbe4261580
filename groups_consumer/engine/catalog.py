"""The groups of the database, compiled: parsed rules, exclusive sets in priority order, broken reasons, and
each group's refresh policy (how it may be updated, how often it falls back to a sync)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

import structlog
from django.db import DatabaseError

from groups_consumer.definition_limits import check_rule
from groups_consumer.engine import rules
from groups_consumer.engine.definitions_version import definitions_version
from groups_consumer.engine.readers import Readers
from groups_consumer.errors import DefinitionError
from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.models import Group, ScopeType
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.shared import CriterionScope, Selection, all_of

log = structlog.get_logger(__name__)
#: The backend every group's scope is answered by (its snapshots are always loaded).
FACTS = LearnerFacts.name
#: How the broken reason of a group the database refused to evaluate starts. Unlike the other reasons (an
#: invalid rule, a missing plugin), compiling the group cannot tell whether it still holds: it stays until
#: the definition is applied again (which checks it on the database first).
UNEVALUABLE = "the database cannot evaluate the rule: "


@dataclass(frozen=True, eq=False)
class CompiledGroup:
    """A group ready to evaluate, or, with ``rule`` None, one that cannot be (see ``broken_reason``).

    ``refresh`` is the group's override of its fallback sync frequency; ``frozen`` groups keep their members.
    ``readers`` are the backends its rule is evaluated with (those of the process by default).
    """

    id: int
    name: str
    scope: CriterionScope
    exclusive_set: str | None
    priority: int
    rule: rules.Node | None
    broken_reason: str = ""
    frozen: bool = False
    refresh: timedelta | None = None
    readers: Readers = field(default_factory=Readers.installed, repr=False)

    @property
    def evaluable(self) -> bool:
        """True when the rule can be evaluated (the group is enabled and its criteria are available)."""
        return self.rule is not None

    @property
    def evaluable_rule(self) -> rules.Node:
        """The rule of an evaluable group; ValueError for a broken or disabled one (see ``evaluable``)."""
        if self.rule is None:
            raise ValueError(f"group {self} cannot be evaluated: {self.broken_reason or 'disabled'}")
        return self.rule

    @cached_property
    def update_methods(self) -> frozenset[UpdateMethod]:
        """What may change the group's memberships: nothing when it is frozen, broken or disabled."""
        if self.rule is None or self.frozen:
            return frozenset()
        return rules.update_methods(self.rule)

    def updated_by(self, method: UpdateMethod) -> bool:
        """True when ``method`` may change the group's memberships."""
        return method in self.update_methods

    @cached_property
    def refresh_interval(self) -> timedelta | None:
        """How often the scheduler syncs the group: its override, else the shortest of its criteria's
        frequencies; None when the scheduler never syncs it."""
        if not self.updated_by(UpdateMethod.SCHEDULE):
            return None
        return self.refresh or min(leaf.criterion.refresh for leaf in rules.leaves(self.evaluable_rule))

    @cached_property
    def time_relative(self) -> list[rules.Leaf]:
        """Leaves whose answer changes with time alone, when events (and time) update the group."""
        return rules.time_relative_leaves(self.evaluable_rule) if self.updated_by(UpdateMethod.EVENTS) else []

    @property
    def precedence(self) -> tuple[int, str, int]:
        """Sort key within an exclusive set: highest priority first, then name, then id."""
        return (-self.priority, self.name, self.id)

    @property
    def backends(self) -> set[str]:
        """Backend names whose snapshots per-user evaluation needs."""
        return {FACTS} | {leaf.criterion.backend for leaf in rules.leaves(self.evaluable_rule)}

    def members(self, now: datetime) -> Selection:
        """Set-based: every user of the scope the rule matches."""
        population = self.population()
        return all_of([population, rules.select(self.evaluable_rule, population, now, self.readers)])

    def population(self) -> Selection:
        """Set-based: every user of the scope."""
        return self.readers.scope.population(self.scope.type, self.scope.key)

    def qualifies(self, snapshots: rules.Snapshots, user_id: int, now: datetime) -> bool:
        """Per user: in the scope and matched by the rule."""
        return bool(self.qualifying(snapshots, (user_id,), now))

    def qualifying(self, snapshots: rules.Snapshots, user_ids: Iterable[int], now: datetime,
                   failed: set[int] | None = None) -> set[int]:
        """The users among ``user_ids`` who qualify (one loop for a batch's thousands of pairs).

        With ``failed``, a criterion that raises for a user (a plugin's bug, data it did not expect) is logged
        with the group and the user, the user is added to ``failed`` and the others are evaluated; without it
        the exception propagates (``explain`` shows it)."""
        learners: Mapping[int, LearnerSnapshot] = snapshots[FACTS]
        scope_type, key = self.scope.type, self.scope.key
        matches = rules.matcher(self.evaluable_rule, snapshots, now)
        found = set()
        for user_id in user_ids:
            learner = learners.get(user_id)
            try:
                if learner is not None and learner.in_scope(scope_type, key) and matches(user_id):
                    found.add(user_id)
            except DatabaseError:
                raise  # the batch's transaction is at stake: retried (transient) or isolated by the consumer
            except Exception as exc:
                if failed is None:
                    raise
                failed.add(user_id)
                log.error("criterion_failed", group=str(self), group_id=self.id, user_id=user_id,
                          error=f"{type(exc).__name__}: {exc}", exc_info=True)
        return found

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"


def compile_group(group: Group, readers: Readers | None = None) -> CompiledGroup:
    """Compile one stored group (against ``readers``, default: the process's); a disabled group, a rule beyond
    the definition limits or unparseable, or one the database refused to evaluate (see ``UNEVALUABLE``) gives a
    non-evaluable group."""
    scope = CriterionScope(ScopeType(group.scope.type), group.scope.key)
    readers = readers or Readers.installed()

    def compiled(rule: rules.Node | None, broken_reason: str = "") -> CompiledGroup:
        return CompiledGroup(id=group.id, name=group.name, scope=scope, exclusive_set=group.exclusive_set or None,
                             priority=group.priority, rule=rule, broken_reason=broken_reason, frozen=group.frozen,
                             refresh=group.refresh, readers=readers)
    if not group.enabled:
        return compiled(None)
    if group.broken_reason.startswith(UNEVALUABLE):
        return compiled(None, group.broken_reason)
    try:
        check_rule(group.rule)
        return compiled(rules.parse_rule(group.rule, scope))
    except DefinitionError as exc:
        return compiled(None, str(exc))


@dataclass
class GroupCatalog:
    """All groups, compiled once; exclusive sets know their members in precedence order.

    ``version`` is the definitions' version it was compiled from (``engine.definitions_version``), read before
    the groups: a change committed in between makes the catalog look older than it is, never newer. ``readers``
    are the backends every group of it is evaluated with, built once when it is loaded.
    """

    groups: dict[int, CompiledGroup] = field(default_factory=dict)
    version: int | None = None
    readers: Readers = field(default_factory=Readers.installed, repr=False)

    def is_current(self) -> bool:
        """True while no definition changed since the catalog was loaded."""
        return self.version == definitions_version()

    @classmethod
    def load(cls, record_broken: bool = True) -> GroupCatalog:
        """Compile every group. With ``record_broken``, store (or clear) each group's broken reason."""
        catalog = cls(version=definitions_version(), readers=Readers.installed())
        for group in Group.objects.select_related("scope"):
            compiled = compile_group(group, catalog.readers)
            catalog.groups[group.id] = compiled
            if record_broken and group.enabled and group.broken_reason != compiled.broken_reason:
                Group.objects.filter(id=group.id).update(broken_reason=compiled.broken_reason)
                if compiled.broken_reason:
                    log.error("group_broken", group=group.name, scope=str(compiled.scope),
                              reason=compiled.broken_reason)
                else:
                    log.info("group_repaired", group=group.name, scope=str(compiled.scope))
        return catalog

    def exclusive_set(self, name: str) -> list[CompiledGroup]:
        """The groups of an exclusive set, in precedence order."""
        return sorted((g for g in self.groups.values() if g.exclusive_set == name), key=lambda g: g.precedence)

    def with_exclusive_siblings(self, groups: Iterable[CompiledGroup]) -> list[CompiledGroup]:
        """The groups plus every group sharing an exclusive set with one of them (they are decided together)."""
        selected = {g.id: g for g in groups}
        for name in {g.exclusive_set for g in selected.values() if g.exclusive_set}:
            selected.update((g.id, g) for g in self.exclusive_set(name))
        return sorted(selected.values(), key=lambda g: g.id)
