"""Feed the demo consumer a small stream, wave by wave, and show the groups after each wave.

Messages are built as the LMS builds them: openedx-events data classes, openedx-events' Avro serializer,
CloudEvents headers (ce_type, ce_id, ce_time, ...).
"""

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "groups_consumer.settings")
django.setup()

from confluent_kafka import Producer  # noqa: E402
from opaque_keys.edx.keys import CourseKey  # noqa: E402
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes  # noqa: E402
from openedx_events.learning import data, signals  # noqa: E402

from groups_consumer.profile_event import USER_PROFILE_CHANGED, UserProfileData  # noqa: E402

COURSE = CourseKey.from_string("course-v1:Demo+C1+2026")
NOW = datetime.now(UTC)
TOPIC = os.environ.get("KAFKA_TOPICS", "openedx-events").split(",")[0]
producer = Producer({"bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")})


def user(uid):
    """The openedx-events user data of a demo learner."""
    return data.UserData(id=uid, is_active=True, pii=data.UserPersonalData(
        username=f"learner{uid}", email=f"learner{uid}@example.com", name=f"Learner {uid}"))


def send(signal, days_ago, **event_data):
    """Produce one event as the LMS would, dated ``days_ago`` days ago."""
    at = NOW - timedelta(days=days_ago)
    headers = {"ce_type": signal.event_type, "ce_id": str(uuid.uuid1()), "ce_time": at.isoformat(),
               "ce_source": "openedx/lms/web", "ce_specversion": "1.0", "ce_minorversion": "0",
               "content-type": "application/avro"}
    producer.produce(TOPIC, value=serialize_event_data_to_bytes(event_data, signal), headers=headers)


def enroll(uid, mode, days_ago):
    """An enrollment of the learner in the demo course."""
    send(signals.COURSE_ENROLLMENT_CREATED, days_ago, enrollment=data.CourseEnrollmentData(
        user=user(uid), course=data.CourseData(course_key=COURSE), mode=mode, is_active=True,
        creation_date=NOW - timedelta(days=days_ago)))


def grade(uid, percent, days_ago):
    """A new persistent grade of the learner in the demo course."""
    send(signals.PERSISTENT_GRADE_SUMMARY_CHANGED, days_ago, grade=data.PersistentCourseGradeData(
        user_id=uid, course=data.CourseData(course_key=COURSE), course_edited_timestamp=NOW, course_version="1",
        grading_policy_hash="", percent_grade=percent, letter_grade="", passed_timestamp=NOW))


def show(title):
    """Wait for the consumer, then print the members of the demo groups."""
    producer.flush(10)
    time.sleep(float(os.environ.get("DEMO_WAIT_S", 4)))
    print(f"\n== {title}")
    for group in ("inactive-struggling", "verified-learners", "iberia"):
        members = subprocess.run([sys.executable, "-m", "groups_consumer.cli", "members", group],
                                 capture_output=True, text=True).stdout.split()
        print(f"   {group:<22} {', '.join(members) or '-'}")


def main():
    """Produce the waves of the demo, showing the groups after each."""
    for uid in (1, 2, 3, 4):
        send(signals.STUDENT_REGISTRATION_COMPLETED, 60, user=user(uid))
        send(signals.SESSION_LOGIN_COMPLETED, 20 if uid in (1, 2) else 1, user=user(uid))
    enroll(1, "audit", 30)
    enroll(2, "verified", 30)
    enroll(3, "verified", 30)
    enroll(4, "audit", 30)
    show("wave 1: four learners register and enroll (2 and 3 verified); 1 and 2 last logged in 20 days ago\n"
         "   and have no grade yet (counts as 0%): both are inactive-struggling, which outranks verified-learners\n"
         "   in their exclusive set, so verified learner 2 is not in verified-learners")
    grade(1, 0.8, 5)
    grade(2, 0.3, 5)
    show("wave 2: grades arrive: learner 1 has 80% and leaves inactive-struggling; learner 2 has 30% and stays")
    send(signals.SESSION_LOGIN_COMPLETED, 0, user=user(2))
    send(USER_PROFILE_CHANGED, 0, profile=UserProfileData(user=user(3), country="ES"))
    send(USER_PROFILE_CHANGED, 0, profile=UserProfileData(user=user(4), country="PT"))
    show("wave 3: learner 2 logs in today: leaves inactive-struggling and, in the same transaction, joins\n"
         "   verified-learners; learners 3 and 4 set Spain / Portugal in their profile")


if __name__ == "__main__":
    main()
