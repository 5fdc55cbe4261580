"""Data held by groups-consumer: group definitions, memberships with their history, learner facts, and the
state of the running processes (sync leases, consumer reports), and the outbox of events to publish."""

from groups_consumer.models.consumer_status import DeadLetterTally, PartitionStatus
from groups_consumer.models.facts import CourseFact, UserFact
from groups_consumer.models.groups import DefinitionsVersion, Group, Scope, ScopeType
from groups_consumer.models.locks import SyncLease
from groups_consumer.models.memberships import Cause, Membership, MembershipChange
from groups_consumer.models.outbox import EventSource, OutboxMessage

__all__ = ["Cause", "CourseFact", "DeadLetterTally", "DefinitionsVersion", "EventSource", "Group", "Membership",
           "MembershipChange", "OutboxMessage", "PartitionStatus", "Scope", "ScopeType", "SyncLease", "UserFact"]
