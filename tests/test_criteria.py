"""Built-in criteria: semantics of each, both evaluators agreeing, on SQLite and PostgreSQL."""

import pytest

from groups_consumer.definitions import parse_definition
from groups_consumer.errors import DefinitionError
from groups_consumer.testing import evaluate_both_ways
from tests.facts import COURSE, ELSEWHERE, NOW, OTHER_COURSE, course, group_doc, leaf, user

pytestmark = pytest.mark.django_db
INSTANCE = {"type": "instance"}


def members(rule, scope=None):
    return evaluate_both_ways(group_doc(rule, scope), NOW)


def test_last_login_counts_from_registration_when_never_logged_in():
    user(1, login=11)
    user(2, login=10)  # exactly 10 days: not more than 10
    user(3, login=None, registered=30)
    user(4, login=None, registered=5)
    user(5, login=None, registered=None)  # nothing known: matches neither operator
    assert members(leaf("last_login", ">", days=10), INSTANCE) == {1, 3}
    assert members(leaf("last_login", "<=", days=10), INSTANCE) == {2, 4}


def test_enrollment_mode_in_and_not_in_only_count_active_enrollments():
    for uid, mode, active in [(1, "verified", True), (2, "audit", True), (3, "verified", False), (4, None, True)]:
        user(uid)
        course(uid, mode=mode, active=active)
    user(5)
    course(5, OTHER_COURSE, mode="verified")
    assert members(leaf("enrollment_mode", "in", modes=["verified"])) == {1}
    assert members(leaf("enrollment_mode", "not_in", modes=["verified"])) == {2, 4}


@pytest.mark.parametrize(("operator", "expected"), [("<", {1, 4}), ("<=", {1, 2, 4}), (">", {3}), (">=", {2, 3})])
def test_course_grade_comparisons_with_missing_grade_as_zero(operator, expected):
    for uid, grade in [(1, 0.1), (2, 0.4), (3, 0.9), (4, None)]:
        user(uid)
        course(uid, grade=grade)
    user(5)
    course(5, grade=0.1, active=False)  # unenrolled: in no course answer
    assert members(leaf("course_grade", operator, percent=0.4)) == expected


def test_course_passing_true_and_false():
    for uid, passing in [(1, True), (2, False), (3, None)]:
        user(uid)
        course(uid, passing=passing)
    assert members(leaf("course_passing", "=", passing=True)) == {1}
    assert members(leaf("course_passing", "=", passing=False)) == {2, 3}


def test_country_in_and_not_in_with_unknown_country():
    user(1, country="ES")
    user(2, country="PT")
    user(3, country=None)
    assert members(leaf("country", "in", countries=["es", "FR"]), INSTANCE) == {1}
    assert members(leaf("country", "not_in", countries=["ES"]), INSTANCE) == {2, 3}


def test_manual_lists_known_users_of_the_scope_only():
    user(1)
    user(2)
    course(2)
    assert members(leaf("manual", "in", user_ids=[1, 2, 99]), INSTANCE) == {1, 2}
    assert members(leaf("manual", "in", user_ids=[1, 2, 99])) == {2}


def test_scopes_course_org_instance():
    user(1)
    course(1, COURSE)
    user(2)
    course(2, OTHER_COURSE)
    user(3)
    course(3, ELSEWHERE)
    user(4)
    course(4, COURSE, active=False)
    everyone = leaf("manual", "in", user_ids=[1, 2, 3, 4])
    assert members(everyone) == {1}
    assert members(everyone, {"type": "org", "key": "Demo"}) == {1, 2}
    assert members(everyone, INSTANCE) == {1, 2, 3, 4}


def test_course_criterion_in_org_scope_names_its_course():
    user(1)
    course(1, COURSE, grade=0.9)
    user(2)
    course(2, OTHER_COURSE, grade=0.9)
    rule = leaf("course_grade", ">", percent=0.5, course_key=OTHER_COURSE)
    assert members(rule, {"type": "org", "key": "Demo"}) == {2}


def test_rule_tree_all_any_not():
    for uid, login, grade, country in [(1, 20, 0.1, "ES"), (2, 20, 0.9, "ES"), (3, 1, 0.1, "PT"), (4, 1, 0.9, None)]:
        user(uid, login=login, country=country)
        course(uid, grade=grade)
    rule = {"any": [
        {"all": [leaf("last_login", ">", days=10), leaf("course_grade", "<", percent=0.4)]},
        {"not": {"any": [leaf("country", "in", countries=["ES"]), leaf("course_grade", "<", percent=0.5)]}},
    ]}
    assert members(rule) == {1, 4}


@pytest.mark.parametrize(("rule", "field", "message"), [
    (leaf("nope", ">"), "rule.type", "'nope' is not installed"),
    (leaf("last_login", "<", days=3), "rule.operator", "'<' is not supported by 'last_login'"),
    (leaf("last_login", ">", days=-1), "rule.config.days", "greater than or equal to 0"),
    (leaf("last_login", ">", weeks=1), "rule.config.days", "Field required"),
    ({"type": "last_login", "operator": ">", "config": {"days": 1, "hours": 2}}, "rule.config.hours",
     "Extra inputs are not permitted"),
    (leaf("course_grade", "<", percent=1.5), "rule.config.percent", "less than or equal to 1"),
    (leaf("course_grade", "<", percent=0.5, course_key=OTHER_COURSE), "rule.config.course_key",
     "must be omitted or equal the group's course"),
    (leaf("enrollment_mode", "in", modes=[]), "rule.config.modes", "at least 1 item"),
    (leaf("course_passing", "=", passing="maybe"), "rule.config.passing", "valid boolean"),
    (leaf("country", "in", countries=["Spain"]), "rule.config.countries.0", "should match pattern"),
    (leaf("manual", "in", user_ids=["bob"]), "rule.config.user_ids.0", "valid integer"),
    ({"all": [leaf("last_login", ">", days=1), {"any": []}]}, "rule.all[1].any", "non-empty list"),
    ({"not": leaf("country", "is", countries=["ES"])}, "rule.not.operator", "'is' is not supported"),
    ({"all": [], "any": []}, "rule", "takes no other keys"),
    ({"type": "country", "operator": "in", "config": {"countries": ["ES"]}, "weight": 2}, "rule.weight",
     "unknown key"),
])
def test_bad_rules_are_refused_naming_the_field(rule, field, message):
    with pytest.raises(DefinitionError) as caught:
        parse_definition(group_doc(rule))
    assert caught.value.field == field
    assert message in caught.value.message


def test_course_criteria_outside_course_scope_need_a_course_in_scope():
    org = {"type": "org", "key": "Demo"}
    with pytest.raises(DefinitionError, match=r"rule.config.course_key: is required in org scope"):
        parse_definition(group_doc(leaf("course_grade", "<", percent=0.5), org))
    with pytest.raises(DefinitionError, match=r"rule.config.course_key: belongs to org 'Other', not 'Demo'"):
        parse_definition(group_doc(leaf("course_grade", "<", percent=0.5, course_key=ELSEWHERE), org))
    with pytest.raises(DefinitionError, match=r"rule.config.course_key: 'nonsense' is not a valid course key"):
        parse_definition(group_doc(leaf("course_passing", "=", passing=True, course_key="nonsense"), INSTANCE))
