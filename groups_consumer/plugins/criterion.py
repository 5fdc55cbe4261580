"""The criterion type framework: what a criterion plugin provides.

A criterion type is one short class, parameterized by its config model, the backend its ``select`` asks and
the per-user snapshot its ``test`` reads (so that a type checker checks the three against each other)::

    class Country(CriterionType[CountryConfig, LearnerFacts, LearnerSnapshot]):
        name = "country"
        Config = CountryConfig                      # a pydantic model
        operators = ("in", "not_in")
        events = frozenset({PROFILE_CHANGED})       # event types that can change its answer
        backend = "facts"                           # the backend client injected into it

        def select(self, facts, now):               # set-based: for full syncs
            ...
        def test(self, learner, now):               # per user: for incremental evaluation
            ...

``select`` and ``test`` must agree: a user is in ``select(...)`` exactly when ``test`` is true for their
snapshot. The test suite checks this for the built-in types with random facts; plugin authors check theirs
with ``groups_consumer.testing.evaluate_both_ways``.

Refresh policy: ``refresh`` is how often a group using the criterion should be re-synced as a fallback
(the group takes the shortest of its criteria unless it overrides it), and ``update_methods`` says what may
re-evaluate such a group: platform events, the scheduled sync, an operator's request (all three by
default). A criterion whose data has no events (an external source polled on a schedule) leaves ``EVENTS``
out, and groups using it then change only when synced; one too costly to evaluate on demand leaves
``MANUAL`` out.

Time-relative criteria (``last_login > 10 days``) change their answer with no event at all. They implement
``flips(backend, after, upto)``: the users whose answer can change during ``(after, upto]`` with their data
unchanged. The scheduler asks for the users of each elapsed window and re-evaluates only those, so a user
enters the group on time and the cost follows the number of flips, not the size of the group. Check an
implementation with ``groups_consumer.testing.flips_cover_changes``.
"""

from __future__ import annotations

import abc
import enum
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

import pydantic

from groups_consumer.errors import DefinitionError
from groups_consumer.models import ScopeType
from groups_consumer.plugins.backend import BackendClient
from groups_consumer.shared import CriterionScope, Selection

ConfigT = TypeVar("ConfigT", bound=pydantic.BaseModel)
BackendT = TypeVar("BackendT", bound=BackendClient[Any])
LearnerT = TypeVar("LearnerT")
ALL_SCOPES = frozenset(ScopeType)


class UpdateMethod(enum.StrEnum):
    """What may re-evaluate a group's memberships."""

    EVENTS = "events"  # platform events, and the passage of time for time-relative criteria
    SCHEDULE = "schedule"  # the scheduler's fallback full sync, at the group's refresh frequency
    MANUAL = "manual"  # an operator's request: ``groups-consumer sync``, a manual list edit


#: A criterion's fallback sync frequency unless it declares its own.
DEFAULT_REFRESH = timedelta(days=7)


class CriterionType(abc.ABC, Generic[ConfigT, BackendT, LearnerT]):
    """Base class of criterion types. An instance is one configured leaf of one group's rule.

    Subclasses set the class attributes and implement ``select`` and ``test``; ``validate`` may add checks
    that need the scope. Instances are built by ``from_definition``, which validates everything.

    The type parameters: ``ConfigT`` is the class set as ``Config``, ``BackendT`` the backend client named by
    ``backend`` (what ``select`` and ``flips`` receive), ``LearnerT`` what that backend's ``snapshots`` hold
    per user (what ``test`` and ``observed`` receive).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # ClassVar cannot hold a type variable: ``from_definition`` relies on ``Config`` being ``ConfigT``.
    Config: ClassVar[type[pydantic.BaseModel]]
    operators: ClassVar[tuple[str, ...]]
    scopes: ClassVar[frozenset[ScopeType]] = ALL_SCOPES
    events: ClassVar[frozenset[str]] = frozenset()
    backend: ClassVar[str] = "facts"
    refresh: ClassVar[timedelta] = DEFAULT_REFRESH
    update_methods: ClassVar[frozenset[UpdateMethod]] = frozenset(UpdateMethod)

    def __init__(self, operator: str, config: ConfigT, scope: CriterionScope) -> None:
        self.operator = operator
        self.config = config
        self.scope = scope

    @classmethod
    def from_definition(cls, operator: object, config: object, scope: CriterionScope, path: str) -> Self:
        """Validate a leaf of a rule tree and build the criterion; DefinitionError names the bad field."""
        if scope.type not in cls.scopes:
            allowed = ", ".join(sorted(s.value for s in cls.scopes))
            raise DefinitionError(f"{path}.type", f"{cls.name!r} is not available in {scope.type.value} scope "
                                                  f"(allowed: {allowed})")
        errors = []
        if not isinstance(operator, str) or operator not in cls.operators:
            errors.append((f"{path}.operator", f"{operator!r} is not supported by {cls.name!r} "
                                               f"(supported: {', '.join(cls.operators)})"))
        try:
            parsed = cast(ConfigT, cls.Config.model_validate(config if config is not None else {}))
        except pydantic.ValidationError as exc:
            errors += [(".".join(str(part) for part in (f"{path}.config", *error["loc"])), error["msg"])
                       for error in exc.errors()]
        if errors:
            (field, message), *more = errors
            raise DefinitionError(field, message, more)
        criterion = cls(cast(str, operator), parsed, scope)
        try:
            criterion.validate()
        except DefinitionError as exc:
            raise DefinitionError(f"{path}.{exc.field}", exc.message) from exc
        return criterion

    def validate(self) -> None:
        """Checks that need the operator, config and scope together; raise DefinitionError('config.x', ...)."""

    @abc.abstractmethod
    def select(self, backend: BackendT, now: datetime) -> Selection:
        """Set-based evaluation: every user of the backend the criterion matches (scope is applied by the engine)."""

    @abc.abstractmethod
    def test(self, learner: LearnerT, now: datetime) -> bool:
        """Per-user evaluation over the backend's snapshot of one user; must agree with ``select``."""

    def flips(self, backend: BackendT, after: datetime, upto: datetime) -> Selection | None:
        """Time-relative criteria only: every user whose ``test`` can change between ``after`` and ``upto`` with
        their data unchanged (a superset is fine, it only costs evaluations). ``None``: the answer never
        changes by itself (the default)."""
        return None

    @classmethod
    def is_time_relative(cls) -> bool:
        """True when the type implements ``flips``."""
        return cls.flips is not CriterionType.flips

    def observed(self, learner: LearnerT, now: datetime) -> str:
        """What the criterion looked at for this user, for ``explain`` (e.g. 'grade 0.35')."""
        return ""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """JSON schema of the config, for generating forms."""
        return cls.Config.model_json_schema()

    def __repr__(self) -> str:
        return f"<{self.name} {self.operator} {self.config.model_dump_json()}>"
