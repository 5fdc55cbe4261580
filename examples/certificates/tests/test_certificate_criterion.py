"""The ``certificates`` criterion: both evaluators agree, ``flips`` names every user whose answer changes with
time, definitions are checked, and memberships follow certificate events through the consumer's batch."""

import random
from datetime import timedelta

import pytest
from certificate_messages import COURSES, NOW, ORG_A_1, ORG_A_2, ORG_B_1, certificate, enrollment
from groups_consumer import api
from groups_consumer.sdk import CriterionScope, DefinitionError, ScopeType
from groups_consumer.testing import apply_events, evaluate_both_ways, flips_cover_changes

from certificate_facts.criterion import Certificates, CertificatesConfig
from certificate_facts.models import CertificateFact
from certificate_facts.source import CertificateFacts

pytestmark = pytest.mark.django_db
DAY, HOUR, HALF_HOUR = timedelta(days=1), timedelta(hours=1), timedelta(minutes=30)
INSTANCE, ORG_A, COURSE_A1 = {"type": "instance"}, {"type": "org", "key": "OrgA"}, {"type": "course", "key": ORG_A_1}


def leaf(**config) -> dict:
    return {"type": "certificates", "operator": ">=", "config": config}


@pytest.fixture(params=[1, 2, 3])
def platform(request) -> None:
    """40 learners, enrolled here and there, with certificates in every status, earned on whole days before NOW
    (so some exactly on the edge of a window), some of them changed several times."""
    rng = random.Random(request.param)
    messages = []
    for user_id in range(1, 41):
        for course in rng.sample(COURSES, k=rng.randint(0, 3)):
            messages.append(enrollment(user_id, course, NOW - 90 * DAY, rng.choice(["audit", "verified"])))
            for _ in range(rng.randint(0, 3)):
                kind = rng.choice(["created", "changed", "revoked"])
                status = "downloadable" if kind == "created" else rng.choice(["downloadable", "notpassing"])
                messages.append(certificate(user_id, course, status, NOW - rng.randint(0, 40) * DAY, kind=kind))
    apply_events(messages, NOW)


RULES = [
    (INSTANCE, leaf()), (INSTANCE, leaf(count=2)), (INSTANCE, leaf(count=2, within_days=20)),
    (INSTANCE, leaf(within_days=0)), (ORG_A, leaf()), (ORG_A, leaf(count=2, within_days=30)),
    (ORG_A, {"not": leaf(within_days=10)}), (COURSE_A1, leaf(within_days=14)),
    (COURSE_A1, {"all": [leaf(), {"type": "enrollment_mode", "operator": "in", "config": {"modes": ["verified"]}}]}),
    (INSTANCE, {"any": [leaf(count=3), {"type": "last_login", "operator": "<=", "config": {"days": 30}}]}),
]


@pytest.mark.usefixtures("platform")
@pytest.mark.parametrize(("scope", "rule"), RULES)
def test_select_and_test_agree(scope, rule):
    for now in (NOW, NOW + 10 * DAY, NOW + 35 * DAY):
        evaluate_both_ways({"name": "g", "scope": scope, "rule": rule}, now)


@pytest.mark.usefixtures("platform")
def test_a_certificate_counts_while_valid_and_within_the_window():
    valid = CertificateFact.objects.filter(status="downloadable")
    assert evaluate_both_ways({"name": "g", "scope": INSTANCE, "rule": leaf()}, NOW) == set(
        valid.values_list("user_id", flat=True))
    recent = valid.filter(earned_at__gte=NOW - 14 * DAY, course_key=ORG_A_1).values_list("user_id", flat=True)
    in_course = evaluate_both_ways({"name": "g", "scope": COURSE_A1, "rule": leaf(within_days=14)}, NOW)
    assert in_course == set(recent) and in_course  # every holder of ORG_A_1's certificate is enrolled in it


@pytest.mark.usefixtures("platform")
def test_flips_name_every_user_whose_answer_changes_with_time():
    named = set()
    for scope in (INSTANCE, ORG_A, COURSE_A1):
        for days in (0, 10, 30):
            # Windows starting and ending half an hour from the instants certificates were earned at.
            for after in (NOW - HALF_HOUR, NOW - DAY + HALF_HOUR, NOW + 5 * DAY + 7 * HOUR, NOW + (days + 1) * DAY):
                named |= flips_cover_changes(leaf(within_days=days), after, after + DAY, scope)
    assert named, "some certificate should leave a window in these periods"


def test_without_a_window_the_answer_never_changes_by_itself():
    criterion = Certificates(">=", CertificatesConfig(), CriterionScope(ScopeType.INSTANCE))
    assert criterion.flips(CertificateFacts(), NOW, NOW + DAY) is None


def test_a_course_gives_one_certificate_so_course_scope_counts_at_most_one():
    with pytest.raises(DefinitionError) as refused:
        api.validate_definition({"name": "g", "scope": COURSE_A1, "rule": leaf(count=2)})
    assert refused.value.field == "rule.config.count"
    with pytest.raises(DefinitionError, match=r"rule\.config\.within_days"):
        api.validate_definition({"name": "g", "scope": INSTANCE, "rule": leaf(within_days=-1)})


def test_memberships_follow_certificate_events_and_explain_shows_the_certificates():
    api.apply_definitions([{"name": "certified", "scope": ORG_A, "rule": leaf(count=2)}], now=NOW)
    apply_events([enrollment(1, ORG_A_1, NOW - 9 * DAY), enrollment(1, ORG_A_2, NOW - 9 * DAY),
                  certificate(1, ORG_A_1, "downloadable", NOW - 5 * DAY, kind="created"),
                  certificate(1, ORG_B_1, "downloadable", NOW - 5 * DAY, kind="created")], NOW)
    group = api.find_group("certified")
    assert not api.members(group).exists()  # OrgB's certificate does not count in OrgA
    apply_events([certificate(1, ORG_A_2, "downloadable", NOW - DAY, kind="created")], NOW)
    assert list(api.members(group).values_list("user_id", flat=True)) == [1]
    assert "2 earned: course-v1:OrgA+C1+2026, course-v1:OrgA+C2+2026" in "\n".join(
        api.explain(1, group, now=NOW).lines)
    apply_events([certificate(1, ORG_A_1, "unavailable", NOW, kind="revoked")], NOW)
    assert not api.members(group).exists()
