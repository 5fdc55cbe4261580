"""A full sync's differences over one user range, computed by the database in one statement (PostgreSQL).

Each group's selection is a query of user ids there (``Selection.sql``). Exclusivity is applied as
``engine.exclusivity.arbitrate`` applies it: within a set, a user goes to the first group in precedence order
they qualify for, unless a group of the set not being decided holds them. The result is compared with the
range's stored memberships and only the differences come back: a range without any is one statement that
returns no row, where resolving the selections in Python moved every qualifying id and every membership.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BigIntegerField, Case, Value, When

from groups_consumer import bulk_sql
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.membership_writer import MembershipDiff
from groups_consumer.models import Membership, UserFact
from groups_consumer.shared import Query, Selection, UserRange

#: An SQL query and its parameters.
Sql = tuple[str, list[Any]]


class RangeComparison:
    """What ``membership_writer.differences`` gives for a range's users, computed by the database, for the groups
    of ``selections`` (by group id; the mapping is read at each call: a group left out of it is left out).

    Building the statement is Python work (Django compiling every group's conditions: about 5 ms per group, so
    a quarter of a second per range for 50 groups, measured), and its text is the same for every range of one
    shape (bounded on both sides, or open on one), only the bounds change. It is built once per shape with
    stand-ins for the bounds and the users (``_Template``) and reused with each range's own values. It is built
    for every range instead when a selection carries user ids resolved per range
    (``Selection.resolved_by_database``), when its parameters do not follow the bounds that simply (a plugin's
    condition deriving a value from them), and when the statement built for the first range of the shape
    disagrees with the template's.
    """

    def __init__(self, catalog: GroupCatalog, selections: Mapping[int, Selection]) -> None:
        self._catalog, self._selections = catalog, selections
        self._templates: dict[tuple[frozenset[int], bool, bool, bool], _Template | None] = {}

    def differences(self, users: UserRange, only: Collection[int] | None = None) -> MembershipDiff:
        """The differences of the users of ``users`` (those of ``only`` among them, when given), in the caller's
        transaction; pairs in user order, then group order."""
        sql, params = self._statement(users, None if only is None else list(only))
        if only is not None:
            bulk_sql.prefer_index_scans()  # see ``_memberships``
        bulk_sql.plan_for_ranges()
        with connection.cursor() as db:
            db.execute(sql, params)
            rows = db.fetchall()
        return MembershipDiff(joined=[(group_id, user_id) for group_id, user_id, joined in rows if joined],
                              left=[(group_id, user_id) for group_id, user_id, joined in rows if not joined])

    def _statement(self, users: UserRange, only: list[int] | None) -> Sql:
        if not all(selection.resolved_by_database for selection in self._selections.values()):
            return self._build(users, only)
        shape = (frozenset(self._selections), users.after is None, users.upto is None, only is None)
        if shape not in self._templates:
            template = _Template.of(self._build, users.after is None, users.upto is None, only is not None)
            built = self._build(users, only)
            self._templates[shape] = template if template and template.fill(users, only) == built else None
            return built
        template = self._templates[shape]
        return template.fill(users, only) if template else self._build(users, only)

    def _build(self, users: UserRange, only: list[int] | None) -> Sql:
        desired, params = _desired(self._catalog, self._selections, users)
        stored, stored_params = _memberships(users, list(self._selections), only)
        if only is not None:
            # Pushed down by the planner into every group's query: each looks these users up, not the range.
            desired, params = f"SELECT * FROM ({desired}) AS d WHERE user_id = ANY(%s::bigint[])", [*params, only]
        return (f"WITH desired (group_id, user_id) AS ({desired}), stored AS ({stored}) "
                "SELECT COALESCE(d.group_id, s.group_id), COALESCE(d.user_id, s.user_id), s.group_id IS NULL "
                "FROM desired AS d FULL JOIN stored AS s ON s.group_id = d.group_id AND s.user_id = d.user_id "
                "WHERE d.group_id IS NULL OR s.group_id IS NULL ORDER BY 2, 1", [*params, *stored_params])


#: Two sets of stand-ins for a range's bounds and a user, none of them a user id (all below -2**62).
_STAND_INS = ((-(2**62) - 101, -(2**62) - 103, -(2**62) - 107), (-(2**62) - 109, -(2**62) - 113, -(2**62) - 127))


@dataclass(frozen=True)
class _Template:
    """A statement built with stand-ins, and where its parameters take a range's values: ``slots`` maps a
    parameter's position to 0 (the range's lower bound), 1 (its upper bound) or 2 (the list of users)."""

    sql: str
    params: list[Any]
    slots: dict[int, int]

    @classmethod
    def of(cls, build: Callable[[UserRange, list[int] | None], Sql], open_below: bool, open_above: bool,
           with_users: bool) -> _Template | None:
        """The template of ``build`` for ranges of one shape, or None when its statement with one set of
        stand-ins differs from the other anywhere but where a stand-in went in."""
        values = [(None if open_below else after, None if open_above else upto, [user] if with_users else None)
                  for after, upto, user in _STAND_INS]
        (sql, params), (other_sql, other_params) = (build(UserRange(after, upto), users)
                                                    for after, upto, users in values)
        if sql != other_sql or len(params) != len(other_params):
            return None
        slots = {}
        for position, pair in enumerate(zip(params, other_params, strict=True)):
            if pair[0] == pair[1]:
                continue
            slot = next((slot for slot, stand_ins in enumerate(zip(*values, strict=True))
                         if stand_ins[0] is not None and pair == stand_ins), None)
            if slot is None:
                return None
            slots[position] = slot
        return cls(sql, params, slots)

    def fill(self, users: UserRange, only: list[int] | None) -> Sql:
        """The statement for ``users`` (and ``only``)."""
        values = (users.after, users.upto, only)
        params = list(self.params)
        for position, slot in self.slots.items():
            params[position] = values[slot]
        return self.sql, params


def _desired(catalog: GroupCatalog, selections: Mapping[int, Selection], users: UserRange) -> Sql:
    """The (group id, user id) pairs the groups should have, exclusivity applied."""
    parts: list[Sql] = []
    exclusive_sets: dict[str, list[int]] = defaultdict(list)
    for group_id, selection in selections.items():
        name = catalog.groups[group_id].exclusive_set
        if name is None:
            parts.append(_tagged(selection.sql(users), group_id))
        else:
            exclusive_sets[name].append(group_id)
    parts += [_first_qualifying(catalog.exclusive_set(name), selections, users) for name in exclusive_sets]
    return _union_all(parts)


def _first_qualifying(in_order: list[CompiledGroup], selections: Mapping[int, Selection], users: UserRange) -> Sql:
    """(group id, user id) of each user's group in an exclusive set (its groups in precedence order): the first
    one they qualify for, or none when a group of the set not being decided holds them (frozen, broken, not
    updated by this method: it keeps them)."""
    if chained := _first_condition(in_order, selections, users):
        return chained
    ranked = [_tagged(selections[group.id].sql(users), group.id, rank)
              for rank, group in enumerate(in_order, 1) if group.id in selections]
    if held := [group.id for group in in_order if group.id not in selections]:
        memberships, params = _memberships(users, held)
        ranked.append((f"SELECT group_id, user_id, 0 FROM ({memberships}) AS held", params))
    candidates, params = _union_all(ranked)
    return (f"SELECT group_id, user_id FROM (SELECT DISTINCT ON (user_id) group_id, user_id, rank "
            f"FROM ({candidates}) AS c (group_id, user_id, rank) ORDER BY user_id, rank) AS chosen WHERE rank > 0",
            params)


def _first_condition(in_order: list[CompiledGroup], selections: Mapping[int, Selection],
                     users: UserRange) -> Sql | None:
    """``_first_qualifying`` in one pass over the range's users, when every group of the set is decided and
    selects by a condition on their rows (``Query``): ``CASE WHEN`` its condition ``THEN`` the group, in
    precedence order (measured: about a fifth less database time for a million users' re-sync than each
    group's users ranked and sorted). None otherwise, and for a condition joined to a related table (a row per
    match, each its own answer)."""
    conditions = [selection for group in in_order if isinstance(selection := selections.get(group.id), Query)]
    if len(conditions) < len(in_order):
        return None
    first = Case(*(When(condition.q_for(users), then=Value(group.id))
                   for group, condition in zip(in_order, conditions, strict=True)), output_field=BigIntegerField())
    rows = (UserFact.objects.filter(users.q()).annotate(first=first).filter(first__isnull=False)
            .values_list("first", "user_id"))
    if len(rows.query.alias_map) > 1:
        return None
    sql, params = rows.query.sql_with_params()
    return sql, list(params)


def _tagged(selection: Sql, group_id: int, rank: int | None = None) -> Sql:
    """The users of a selection as (group id, user id) rows, with a rank when given."""
    sql, params = selection
    columns = f"{int(group_id)}, user_id" + ("" if rank is None else f", {int(rank)}")
    return f"SELECT {columns} FROM ({sql}) AS s", params


def _union_all(parts: Sequence[Sql]) -> Sql:
    return " UNION ALL ".join(sql for sql, _ in parts), [param for _, params in parts for param in params]


def _memberships(users: UserRange, group_ids: list[int], only: list[int] | None = None) -> Sql:
    """(group_id, user_id) of the stored memberships of the range's users (of ``only`` among them) in the
    groups."""
    if only is None:
        sql, params = (Membership.objects.filter(users.q()).values("group_id", "user_id").query.sql_with_params())
    else:
        sql, params = (f"SELECT group_id, user_id FROM {bulk_sql.quote(Membership._meta.db_table)} "
                       "WHERE user_id = ANY(%s::bigint[])", (only,))
    # Through the users' index: OFFSET 0 keeps the planner from folding in the groups' condition, with which it
    # read the groups' memberships instead (measured for 50,000 users: 34 to 43 ms against 14 to 31; for 100,
    # 240 to 320 ms against 0.3). Before the memberships of a first sync are analyzed, it also scanned the whole
    # table for 100 users (180 ms): ``RangeComparison`` then asks for index scans.
    return (f"SELECT group_id, user_id FROM ({sql} OFFSET 0) AS m WHERE group_id = ANY(%s::bigint[])",
            [*params, group_ids])
