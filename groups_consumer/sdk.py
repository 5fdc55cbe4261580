"""What a plugin author imports: the interfaces of criterion types and fact sources, and the types they use.

A plugin package depends on these names only; everything else in ``groups_consumer`` is the service's own and
may change. ``docs/criterion-authors.rst`` walks through a complete plugin (``examples/certificates``), and
``groups_consumer.testing`` has the helpers its tests use.
"""

from groups_consumer.errors import DefinitionError
from groups_consumer.facts.interface import COMPARISONS, LearnerFacts
from groups_consumer.facts.snapshot import CourseState, LearnerSnapshot
from groups_consumer.models import ScopeType
from groups_consumer.plugins.backend import BackendClient
from groups_consumer.plugins.criterion import CriterionType, UpdateMethod
from groups_consumer.plugins.events import CourseKeyText, EventPayload, EventSpec, PlatformEvent, UserId
from groups_consumer.plugins.source import Applied, ChangedFact, FactSource, FactUpdate, LockedUsers, is_newer
from groups_consumer.shared import CriterionScope, Ids, Query, Selection, UserRange, course_org

__all__ = [
    "COMPARISONS", "Applied", "BackendClient", "ChangedFact", "CourseKeyText", "CourseState", "CriterionScope",
    "CriterionType", "DefinitionError", "EventPayload", "EventSpec", "FactSource", "FactUpdate", "Ids",
    "LearnerFacts", "LearnerSnapshot", "LockedUsers", "PlatformEvent", "Query", "ScopeType", "Selection",
    "UpdateMethod", "UserId", "UserRange", "course_org", "is_newer",
]
