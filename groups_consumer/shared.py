"""The types every layer shares (facts, plugins, engine, pipeline): sets of users, and group scopes.

Sets of users are what the set-based evaluators describe, resolved lazily in bounded user-id ranges.

A ``Query`` is a condition on the ``UserFact`` table (one SQL query whatever the tree below it); ``Ids`` is an
explicit set, for backends without ORM access. ``all_of`` / ``any_of`` / ``complement`` fold ``Query`` parts
into one condition and keep a composite only where explicit sets force Python set algebra. Resolving always
happens one ``UserRange`` at a time, so memory stays bounded by the range, not by the population. On
PostgreSQL a selection also gives itself as one SQL query (``Selection.sql``), for a full sync to compare it
with the stored memberships in the database, where composites become set operations.
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache, reduce
from typing import Any

from django.db.models import Q
from opaque_keys import InvalidKeyError
from opaque_keys.edx.keys import CourseKey

from groups_consumer.models import ScopeType, UserFact


@dataclass(frozen=True)
class UserRange:
    """User ids in ``(after, upto]``; ``None`` leaves that side open."""

    after: int | None = None
    upto: int | None = None

    def q(self) -> Q:
        q = Q()
        if self.after is not None:
            q &= Q(user_id__gt=self.after)
        if self.upto is not None:
            q &= Q(user_id__lte=self.upto)
        return q

    def __contains__(self, user_id: int) -> bool:
        return (self.after is None or user_id > self.after) and (self.upto is None or user_id <= self.upto)


EVERYONE = UserRange()
#: A range that holds no user: resolving a query on it has the database compile and plan the query, cheaply.
NO_USERS = UserRange(0, 0)


class Selection(abc.ABC):
    """A set of users, resolved on demand within a user-id range."""

    @abc.abstractmethod
    def resolve(self, within: UserRange) -> set[int]:
        """The selected user ids inside ``within``."""

    def queries(self) -> Iterator[Query]:
        """The ``Query`` parts resolving the selection runs (none for an explicit set)."""
        yield from ()

    def sql(self, within: UserRange) -> tuple[str, list[Any]]:
        """The selected user ids inside ``within`` as one SQL query (PostgreSQL) of a ``user_id`` column, each id
        once, and its parameters. By default the ids are resolved here and sent as an array."""
        return "SELECT unnest(%s::bigint[]) AS user_id", [sorted(self.resolve(within))]

    @property
    def resolved_by_database(self) -> bool:
        """True when ``sql`` is conditions on tables only, its parameters those conditions' values and the range's
        bounds; False when it carries user ids resolved here (an explicit set)."""
        return False


@dataclass(frozen=True)
class Query(Selection):
    """Users whose ``UserFact`` row satisfies ``q`` (subqueries on other tables allowed).

    ``in_range``, when given, builds the same condition for the users of one range only: a backend whose
    condition has a subquery passes the range into it, so that resolving range after range reads each
    range's rows of the other table instead of its whole content every time.
    """

    q: Q
    in_range: Callable[[UserRange], Q] | None = None

    def q_for(self, within: UserRange) -> Q:
        """The condition for the users of ``within``."""
        return self.in_range(within) if self.in_range is not None else self.q

    def resolve(self, within: UserRange) -> set[int]:
        return set(UserFact.objects.filter(self.q_for(within), within.q()).values_list("user_id", flat=True))

    def sql(self, within: UserRange) -> tuple[str, list[Any]]:
        rows = UserFact.objects.filter(self.q_for(within), within.q()).values("user_id")
        if len(rows.query.alias_map) > 1:  # joined to a related table (``courses__...``): a row per match
            rows = rows.distinct()
        # Not elided when the condition can match no row (``__in=[]``): the query must still give its column.
        sql, params = rows.query.get_compiler(using=rows.db, elide_empty=False).as_sql()
        return sql, list(params)

    @property
    def resolved_by_database(self) -> bool:
        return True

    def queries(self) -> Iterator[Query]:
        yield self

    def count(self) -> int:
        """How many users are selected, counted by the database."""
        return UserFact.objects.filter(self.q).count()


@dataclass(frozen=True)
class Ids(Selection):
    """An explicit set of user ids."""

    ids: frozenset[int]

    def resolve(self, within: UserRange) -> set[int]:
        return {user_id for user_id in self.ids if user_id in within}

    def sql(self, within: UserRange) -> tuple[str, list[Any]]:
        # Every id, kept to the range by the database: the same parameters whatever the range but its bounds.
        bounds = [("user_id > %s", within.after), ("user_id <= %s", within.upto)]
        conditions = [(condition, bound) for condition, bound in bounds if bound is not None]
        where = " AND ".join(condition for condition, _ in conditions) or "TRUE"
        return (f"SELECT user_id FROM unnest(%s::bigint[]) AS ids (user_id) WHERE {where}",
                [sorted(self.ids), *(bound for _, bound in conditions)])

    @property
    def resolved_by_database(self) -> bool:
        return True


@dataclass(frozen=True)
class _Intersection(Selection):
    parts: tuple[Selection, ...]

    def resolve(self, within: UserRange) -> set[int]:
        result = self.parts[0].resolve(within)
        for part in self.parts[1:]:
            if not result:
                break
            result &= part.resolve(within)
        return result

    def sql(self, within: UserRange) -> tuple[str, list[Any]]:
        # The first part (an explicit set when there is one, see ``all_of``) filtered by the others: the
        # planner then probes the others per user of the set instead of reading every user they select.
        (first, params), *others = (part.sql(within) for part in self.parts)
        conditions = " AND ".join(f"user_id IN ({sql})" for sql, _ in others)
        return (f"SELECT user_id FROM ({first}) AS s WHERE {conditions}",
                [*params, *(param for _, part_params in others for param in part_params)])

    @property
    def resolved_by_database(self) -> bool:
        return all(part.resolved_by_database for part in self.parts)

    def queries(self) -> Iterator[Query]:
        for part in self.parts:
            yield from part.queries()


@dataclass(frozen=True)
class _Union(Selection):
    parts: tuple[Selection, ...]

    def resolve(self, within: UserRange) -> set[int]:
        return set().union(*(part.resolve(within) for part in self.parts))

    def sql(self, within: UserRange) -> tuple[str, list[Any]]:
        return _compound("UNION", [part.sql(within) for part in self.parts])

    @property
    def resolved_by_database(self) -> bool:
        return all(part.resolved_by_database for part in self.parts)

    def queries(self) -> Iterator[Query]:
        for part in self.parts:
            yield from part.queries()


@dataclass(frozen=True)
class _Difference(Selection):
    universe: Selection
    removed: Selection

    def resolve(self, within: UserRange) -> set[int]:
        return self.universe.resolve(within) - self.removed.resolve(within)

    def sql(self, within: UserRange) -> tuple[str, list[Any]]:
        return _compound("EXCEPT", [self.universe.sql(within), self.removed.sql(within)])

    @property
    def resolved_by_database(self) -> bool:
        return self.universe.resolved_by_database and self.removed.resolved_by_database

    def queries(self) -> Iterator[Query]:
        yield from self.universe.queries()
        yield from self.removed.queries()


def _compound(set_operator: str, parts: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    """Queries of user ids combined by a set operator (which gives each id once)."""
    return (f" {set_operator} ".join(f"SELECT user_id FROM ({sql}) AS s" for sql, _ in parts),
            [param for _, params in parts for param in params])


def probe(selection: Selection) -> None:
    """Have the database compile every query of the selection, as resolving it range by range will (on a
    range of no users): a query it cannot evaluate raises its DatabaseError now."""
    for query in selection.queries():
        query.resolve(NO_USERS)


def all_of(parts: Iterable[Selection]) -> Selection:
    """Users in every part. Query parts are ANDed into one condition; the rest are intersected in Python."""
    queries, others = _split(parts)
    if queries:
        others.insert(0, _fold(queries, operator.and_))
    if len(others) == 1:
        return others[0]
    # Explicit id sets first: they are usually small and make the intersection cheap.
    return _Intersection(tuple(sorted(others, key=lambda p: not isinstance(p, Ids))))


def any_of(parts: Iterable[Selection]) -> Selection:
    """Users in at least one part."""
    queries, others = _split(parts)
    if queries:
        others.insert(0, _fold(queries, operator.or_))
    return others[0] if len(others) == 1 else _Union(tuple(others))


def complement(removed: Selection, universe: Selection) -> Selection:
    """Users of ``universe`` not in ``removed``."""
    if isinstance(removed, Query) and isinstance(universe, Query):
        kept, dropped = universe, removed

        def ranged(within: UserRange) -> Q:
            return kept.q_for(within) & ~dropped.q_for(within)
        return Query(universe.q & ~removed.q, ranged if removed.in_range or universe.in_range else None)
    return _Difference(universe, removed)


def _fold(queries: list[Query], combine: Callable[[Q, Q], Q]) -> Query:
    """One Query for several, keeping their per-range forms."""
    def ranged(within: UserRange) -> Q:
        return reduce(combine, (p.q_for(within) for p in queries))
    return Query(reduce(combine, (p.q for p in queries)), ranged if any(p.in_range for p in queries) else None)


def _split(parts: Iterable[Selection]) -> tuple[list[Query], list[Selection]]:
    queries: list[Query] = []
    others: list[Selection] = []
    for part in parts:
        if isinstance(part, Query):
            queries.append(part)
        else:
            others.append(part)
    if not queries and not others:
        raise ValueError("a combination needs at least one part")
    return queries, others


@dataclass(frozen=True)
class CriterionScope:
    """The scope of the group a criterion belongs to."""

    type: ScopeType
    key: str = ""

    @cached_property
    def org(self) -> str | None:
        """The organization of an org scope, or of a course scope's course."""
        if self.type == ScopeType.ORG:
            return self.key
        if self.type == ScopeType.COURSE:
            return course_org(self.key)
        return None

    def __str__(self) -> str:
        return self.type.value if self.type == ScopeType.INSTANCE else f"{self.type.value}:{self.key}"


@lru_cache(maxsize=8192)
def course_org(course_key: str) -> str:
    """The organization part of a course key; ValueError if it is not a course key (parsing costs tens of
    microseconds and a platform has few courses: answers are cached)."""
    try:
        org = CourseKey.from_string(course_key).org
    except InvalidKeyError as exc:
        raise ValueError(f"{course_key!r} is not a valid course key") from exc
    if org is None:  # typed optional by opaque-keys; every course key format has an org
        raise ValueError(f"{course_key!r} names no organization")
    return org
