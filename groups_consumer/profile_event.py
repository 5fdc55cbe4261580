"""The profile-changed event this project defines (openedx-events has none).

The LMS (or a plugin in it) sends it like any openedx-event::

    from groups_consumer.profile_event import USER_PROFILE_CHANGED, UserProfileData
    USER_PROFILE_CHANGED.send_event(profile=UserProfileData(user=user_data, country="ES"))

Its Avro schema is derived from this definition (``schema_from_signal``) and written to
``schemas/org.openedx.learning.user.profile.changed.v1.avsc`` for registries and other producers; a test
keeps the file equal to the derived schema. Further fields may be added, each nullable with a None default.
"""

import attr
from openedx_events.learning.data import UserData
from openedx_events.tooling import OpenEdxPublicSignal


@attr.s(frozen=True)
class UserProfileData:
    """A user's profile after a change: the user and their country (ISO 3166-1 alpha-2, or None)."""

    user = attr.ib(type=UserData)
    country = attr.ib(type=str, default=None)


USER_PROFILE_CHANGED = OpenEdxPublicSignal(
    event_type="org.openedx.learning.user.profile.changed.v1",
    data={"profile": UserProfileData},
)
