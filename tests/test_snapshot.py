"""LearnerSnapshot: the active courses and orgs routing and scopes read, made with the snapshot."""

from groups_consumer.facts.snapshot import CourseState, LearnerSnapshot
from groups_consumer.models import ScopeType


def test_active_courses_and_orgs_come_from_active_enrollments_only():
    learner = LearnerSnapshot(1, courses={
        "course-v1:OrgA+C1+R": CourseState("OrgA", "verified", is_active=True),
        "course-v1:OrgA+C2+R": CourseState("OrgA", "audit", is_active=True),
        "course-v1:OrgB+C1+R": CourseState("OrgB", "audit", is_active=False),
        "course-v1:OrgC+C1+R": CourseState("OrgC", None, is_active=False, grade=0.9),
    })
    assert learner.active_courses == {"course-v1:OrgA+C1+R", "course-v1:OrgA+C2+R"}
    assert learner.active_orgs == {"OrgA"}
    assert learner.in_scope(ScopeType.COURSE, "course-v1:OrgA+C2+R")
    assert not learner.in_scope(ScopeType.COURSE, "course-v1:OrgB+C1+R")
    assert learner.in_scope(ScopeType.ORG, "OrgA")
    assert not learner.in_scope(ScopeType.ORG, "OrgB")
    assert learner.in_scope(ScopeType.INSTANCE, "")


def test_a_user_with_no_active_enrollment_is_in_no_course_or_org_scope():
    for courses in ({}, {"course-v1:OrgB+C1+R": CourseState("OrgB", "audit", is_active=False)}):
        learner = LearnerSnapshot(2, courses=courses)
        assert learner.active_courses == frozenset()
        assert learner.active_orgs == frozenset()
        assert not learner.in_scope(ScopeType.ORG, "OrgB")
        assert learner.in_scope(ScopeType.INSTANCE, "")
