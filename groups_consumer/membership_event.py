"""The membership-changed event this project publishes (see ``docs/membership-events.rst``).

One event per user joining or leaving a group, defined like any openedx-event: attrs data classes and an
``OpenEdxPublicSignal``. A service that receives it through edx-event-bus-kafka's ``KafkaEventConsumer``
imports this module (it needs only attrs and openedx-events, not Django settings of ours), so that the signal
exists in its process, and connects a receiver::

    from groups_consumer.membership_event import USER_GROUP_MEMBERSHIP_CHANGED

    @receiver(USER_GROUP_MEMBERSHIP_CHANGED)
    def on_change(membership_change, metadata, **kwargs): ...

Its Avro schema is derived from this definition (``schema_from_signal``) and written to
``schemas/org.openedx.learning.user_group.membership.changed.v1.avsc``; a test keeps the file equal to the
derived schema. Ids only: the user is an id, never a username, email or name.
"""

from datetime import datetime

import attr
from openedx_events.tooling import OpenEdxPublicSignal


@attr.s(frozen=True)
class UserGroupData:
    """A group as it was when the membership changed: its id and name, its scope, its exclusive set (or None)."""

    id = attr.ib(type=int)
    name = attr.ib(type=str)
    scope_type = attr.ib(type=str)
    scope_key = attr.ib(type=str)
    exclusive_set = attr.ib(type=str, default=None)


@attr.s(frozen=True)
class UserGroupMembershipChangeData:
    """A user joining or leaving a group.

    ``change`` is ``joined`` or ``left``; ``cause`` is what made it: ``event`` (``cause_id`` is the platform
    event's ``ce_id``), ``sync`` (the sync run), ``manual`` (an operator or API call), ``time`` (a
    time-relative criterion crossed its threshold; the flip pass), or ``snapshot`` (not a change: the
    current members, published by ``groups-consumer publish-snapshot`` for a new subscriber). ``changed_at`` is
    when the change was made (for a snapshot, when the snapshot was taken).
    """

    user_id = attr.ib(type=int)
    group = attr.ib(type=UserGroupData)
    change = attr.ib(type=str)
    cause = attr.ib(type=str)
    cause_id = attr.ib(type=str)
    changed_at = attr.ib(type=datetime)


USER_GROUP_MEMBERSHIP_CHANGED = OpenEdxPublicSignal(
    event_type="org.openedx.learning.user_group.membership.changed.v1",
    data={"membership_change": UserGroupMembershipChangeData},
)
#: The data field the messages are keyed by (as edx-event-bus-kafka's ``event_key_field``): one user's changes
#: go to one partition, in order.
EVENT_KEY_FIELD = "membership_change.user_id"
