"""Stage 1b: what decodes must also make sense before anything is written.

Avro guarantees the types and the presence of the fields a schema requires; it cannot say that a course key
parses, that a user id is positive or that a grade is a percentage. The rules the fact stage and the criteria
rely on are declared once here, as pydantic models of the parts of each payload this service reads (other
fields are ignored), and checked per event: a violation is a ``DecodeError`` with its own reason code, so the
message goes to the dead-letter topic like an undecodable one and the consumer goes on.

Accepted course keys: ``course-v1:ORG+COURSE+RUN``, CCX keys ``ccx-v1:ORG+COURSE+RUN+ccx@N`` and the deprecated
``ORG/COURSE/RUN`` form of old courses, as the LMS sends them; not content-library keys (``library-v1:``),
which have no enrollments, nor anything opaque-keys cannot parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any

from opaque_keys import InvalidKeyError
from opaque_keys.edx.keys import CourseKey
from opaque_keys.edx.locator import CourseLocator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from groups_consumer import event_types as types
from groups_consumer.errors import DecodeError

#: The longest strings stored from events: Django's username, the LMS's course-mode slug and course-key fields.
MAX_USERNAME, MAX_MODE, MAX_COURSE_KEY = 150, 100, 255


@lru_cache(maxsize=8192)
def _course_key(text: str) -> str:
    """``text`` if it is a course key (parsing costs tens of microseconds; a platform has few courses)."""
    try:
        key = CourseKey.from_string(text)
    except InvalidKeyError:
        raise ValueError(f"{text!r} is not a valid course key") from None
    if not isinstance(key, CourseLocator):  # CCXLocator is a CourseLocator; LibraryLocator is not
        raise ValueError(f"{text!r} is not a course key (a {type(key).__name__})")
    return text


UserId = Annotated[int, Field(gt=0, le=2**63 - 1)]
CourseKeyText = Annotated[str, StringConstraints(max_length=MAX_COURSE_KEY), AfterValidator(_course_key)]


class _Read(BaseModel):
    """The part of a record this service reads; everything else in it is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Pii(_Read):
    username: Annotated[str, StringConstraints(max_length=MAX_USERNAME)]


class _User(_Read):
    id: UserId
    pii: _Pii


class _Course(_Read):
    course_key: CourseKeyText


class _UserEvent(_Read):
    user: _User


class _Enrollment(_Read):
    user: _User
    course: _Course
    mode: Annotated[str, StringConstraints(min_length=1, max_length=MAX_MODE)]
    is_active: bool


class _EnrollmentEvent(_Read):
    enrollment: _Enrollment


class _Grade(_Read):
    user_id: UserId
    course: _Course
    percent_grade: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class _GradeEvent(_Read):
    grade: _Grade


class _PassingStatus(_Read):
    user: _User
    course: _Course
    is_passing: bool


class _PassingEvent(_Read):
    course_passing_status: _PassingStatus


class _Profile(_Read):
    user: _User
    country: Annotated[str, StringConstraints(pattern=r"^([A-Za-z]{2})?$")] | None  # "": no country, as None


class _ProfileEvent(_Read):
    profile: _Profile


PAYLOADS: dict[str, type[_Read]] = {
    types.LOGIN: _UserEvent, types.REGISTRATION: _UserEvent,
    **dict.fromkeys(types.ENROLLMENT_EVENTS, _EnrollmentEvent),
    types.GRADE_CHANGED: _GradeEvent, types.PASSING_STATUS_UPDATED: _PassingEvent,
    types.PROFILE_CHANGED: _ProfileEvent,
}
#: Reason codes by the name of the field that is wrong.
FIELD_REASONS = {"id": "invalid_user_id", "user_id": "invalid_user_id", "course_key": "invalid_course_key",
                 "percent_grade": "invalid_grade", "country": "invalid_country", "mode": "invalid_mode"}
MISSING = frozenset({"missing", "model_type", "model_attributes_type", "none_required"})


def check_payload(event_type: str, data: Mapping[str, Any]) -> None:
    """Raise DecodeError (``invalid_user_id``, ``invalid_course_key``, ``invalid_grade``, ``invalid_country``,
    ``invalid_mode``, ``value_too_long``, ``missing_record``, ``invalid_value``) if the payload breaks a rule;
    the detail names the field by its path (``enrollment.course.course_key``)."""
    model = PAYLOADS.get(event_type)
    if model is None:
        return
    try:
        model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        path = ".".join(str(part) for part in error["loc"])
        field = next((str(part) for part in reversed(error["loc"]) if isinstance(part, str)), "")
        if error["type"] in MISSING:
            reason = "missing_record"
        elif error["type"] == "string_too_long":
            reason = "value_too_long"
        else:
            reason = FIELD_REASONS.get(field, "invalid_value")
        raise DecodeError(reason, f"{path}: {error['msg']} (got {error['input']!r:.200})") from None
