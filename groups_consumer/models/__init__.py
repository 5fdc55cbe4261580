"""Data held by groups-consumer: group definitions, memberships with their history, and learner facts."""

from groups_consumer.models.facts import CourseFact, UserFact
from groups_consumer.models.groups import Group, Scope, ScopeType
from groups_consumer.models.memberships import Cause, Membership, MembershipChange

__all__ = ["Cause", "CourseFact", "Group", "Membership", "MembershipChange", "Scope", "ScopeType", "UserFact"]
