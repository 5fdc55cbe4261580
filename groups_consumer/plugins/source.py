"""Fact sources: the plugins that keep facts from platform events, and answer the criteria's questions on them.

A fact source is a backend client (``BackendClient``: the per-user snapshots ``test`` reads, and whatever
set-based questions its criteria ``select`` and ``flips`` ask) that also keeps its own facts up to date. It
declares, once:

- ``events``: the event types it consumes, as ``EventSpec`` (signal and payload rules). The consumer decodes
  the union of the installed sources' event types; the rest are dead-lettered as ``unknown_event_type``.
- ``models``: the Django models its facts live in, in its own Django app with its own migrations.
- ``updates(event)``: the facts an event asserts (pure: no database access).
- ``apply(updates, users)``: merge them into its tables, inside the batch's transaction, with the users
  already locked and known. It must be idempotent under redelivery and monotonic by event time (keep, per
  fact, the time of the event it came from; ``is_newer`` decides), so the facts do not depend on the order
  or number of deliveries. It returns the facts that changed: those users are re-evaluated in the groups
  whose criteria listen to the changes' event types.

The consumer does the rest, the same way for every source: decoding and validation, dead letters, per-user
locking, the batch transaction, routing, evaluation, replay; syncs and time passes ask the source through
its criteria's ``select`` / ``flips``. A criterion reads a source by naming it as its ``backend``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from django.db.models import Model

from groups_consumer.plugins.backend import BackendClient
from groups_consumer.plugins.events import EventSpec, PlatformEvent

SnapshotT = TypeVar("SnapshotT")


@dataclass(frozen=True)
class FactUpdate:
    """One fact an event asserts about a user (and a course for course facts), as of the event's time."""

    event: PlatformEvent
    user_id: int
    fact: str
    value: Any
    course_key: str | None = None

    @property
    def version(self) -> tuple[datetime, str]:
        """Order of updates of one fact: event time, then value (a deterministic tie-break)."""
        return (self.event.time, repr(self.value))


def is_newer(update: FactUpdate, stored_time: datetime | None, stored_value: Any) -> bool:
    """True when ``update`` must replace a fact stored with ``stored_value`` from an event of ``stored_time``
    (None: never set): equal times resolve by value, so any order of the same updates ends in the same fact."""
    if stored_time is None:
        return True
    time = update.event.time  # ``version`` compared with the stored one, the values' repr only on a tie
    return time > stored_time or (time == stored_time and repr(update.value) > repr(stored_value))


@dataclass(frozen=True)
class ChangedFact:
    """A fact that changed in a batch, with the (last) event that changed it. ``course_key`` narrows the groups
    re-evaluated to those whose scope can hold the course."""

    user_id: int
    fact: str
    course_key: str | None
    event: PlatformEvent


@dataclass(frozen=True)
class LockedUsers:
    """The users a batch holds while sources apply their updates: every one has a ``UserFact`` row, locked
    until the transaction ends; ``new`` were first heard of in this batch. ``rows`` holds, by user id, the
    values of the ``UserFact`` columns the sources asked for (``FactSource.user_columns``), read by the statement
    that locked them."""

    ids: frozenset[int]
    new: frozenset[int] = frozenset()
    rows: Mapping[int, tuple[Any, ...]] = field(default_factory=dict)


@dataclass
class Applied:
    """What a source's ``apply`` did: the facts that changed, and optionally the snapshots of the batch's users
    as it leaves them (read under the batch's locks), which spares evaluation from loading them again: when
    given, exactly what ``snapshots(users.ids)`` would return now (evaluation takes a user missing from it for
    one the source knows nothing about).

    ``writes``, optionally: statements the source left to its caller, to run in the same transaction once the
    sources are applied (each a callable running one or more ``bulk_sql`` writes whose results nobody reads,
    and on which nothing read in the batch depends: the snapshots must already hold what they write). An
    event batch sends them without waiting for PostgreSQL's answers and routes and evaluates meanwhile
    (``bulk_sql.overlapping``); anywhere else they run at once.
    """

    changed: list[ChangedFact] = field(default_factory=list)
    snapshots: Mapping[int, Any] | None = None
    writes: Sequence[Callable[[], None]] = ()


class FactSource(BackendClient[SnapshotT]):
    """Base class of fact sources (see the module docstring). Subclasses set ``name``, ``events`` and
    ``models`` and implement ``updates``, ``apply`` and ``snapshots``."""

    description: ClassVar[str] = ""
    events: ClassVar[tuple[EventSpec, ...]]
    models: ClassVar[tuple[type[Model], ...]]
    #: Event types that move users into or out of group scopes (only the source answering scopes has any).
    scope_events: ClassVar[frozenset[str]] = frozenset()
    #: Columns of ``UserFact`` (the users table, where the built-in learner facts live) to read while locking.
    user_columns: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def updates(self, event: PlatformEvent) -> Iterable[FactUpdate]:
        """The facts ``event`` (one of ``events``, validated) asserts: from the event alone (no database), as it
        may be asked ahead of the event's batch."""

    @abc.abstractmethod
    def apply(self, updates: Sequence[FactUpdate], users: LockedUsers) -> Applied:
        """Merge ``updates`` (of users in ``users``) into the source's tables, idempotently and monotonically."""

    @classmethod
    def tables(cls) -> list[str]:
        """The database tables of the source's facts."""
        return [model._meta.db_table for model in cls.models]

    @classmethod
    def app_label(cls) -> str:
        """The Django app the source's models (and migrations) belong to."""
        return cls.models[0]._meta.app_label
