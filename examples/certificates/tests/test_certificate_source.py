"""The certificate fact source: events to rows, whatever the order and number of deliveries; bad payloads."""

import random
from datetime import timedelta

import pytest
from certificate_messages import NOW, ORG_A_1, ORG_A_2, ORG_B_1, certificate
from django.db import connection
from django.test.utils import CaptureQueriesContext
from groups_consumer.sdk import LockedUsers
from groups_consumer.testing import apply_events, dead_letter_reason, decode

from certificate_facts.models import CertificateFact
from certificate_facts.source import CertificateFacts

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def rows(users: range) -> dict[tuple[int, str], tuple]:
    """The certificates of ``users``, by position in the range and course."""
    found = CertificateFact.objects.filter(user_id__in=users).values_list(
        "user_id", "course_key", "org", "status", "mode", "earned_at", "changed_at")
    return {(user_id - users.start, course): tuple(rest) for user_id, course, *rest in found}


def test_a_certificate_holds_the_state_of_its_newest_event():
    apply_events([certificate(1, ORG_A_1, "downloadable", NOW - 9 * DAY, kind="created")], NOW)
    assert rows(range(1, 2)) == {(0, ORG_A_1): ("OrgA", "downloadable", "verified", NOW - 9 * DAY, NOW - 9 * DAY)}
    apply_events([certificate(1, ORG_A_1, "unavailable", NOW - 5 * DAY, kind="revoked")], NOW)
    assert rows(range(1, 2))[(0, ORG_A_1)] == ("OrgA", "revoked", "verified", None, NOW - 5 * DAY)
    apply_events([certificate(1, ORG_A_1, "downloadable", NOW - 2 * DAY, mode="professional")], NOW)
    assert rows(range(1, 2))[(0, ORG_A_1)] == ("OrgA", "downloadable", "professional", NOW - 2 * DAY, NOW - 2 * DAY)
    apply_events([certificate(1, ORG_A_1, "notpassing", NOW - 3 * DAY)], NOW)  # older: changes nothing
    assert rows(range(1, 2))[(0, ORG_A_1)][1] == "downloadable"


def history(users: range) -> list:
    """The life of a few certificates of the first three ``users``: earned, revoked, earned again, failed,
    several at one instant."""
    first, second, third = users[:3]
    t = [NOW - d * DAY for d in range(30, -1, -1)]  # t[30] is NOW
    return [
        certificate(first, ORG_A_1, "downloadable", t[1], kind="created"),
        certificate(first, ORG_A_1, "unavailable", t[5], kind="revoked"),
        certificate(first, ORG_A_1, "downloadable", t[9], kind="created", mode="professional"),
        certificate(first, ORG_A_2, "notpassing", t[3]),
        certificate(first, ORG_A_2, "downloadable", t[3], kind="created"),  # same instant: one wins, in any order
        certificate(second, ORG_B_1, "generating", t[2]),
        certificate(second, ORG_B_1, "downloadable", t[4], kind="created"),
        certificate(second, ORG_B_1, "notpassing", t[8], kind="revoked"),
        certificate(third, ORG_A_1, "downloadable", t[20], kind="created"),
        certificate(third, ORG_A_1, "downloadable", t[21]),  # saved again while valid: counts from then
    ]


def test_redelivered_and_reordered_events_give_the_same_rows():
    in_order = range(1, 4)
    messages = history(in_order)
    apply_events(messages, NOW)
    expected = rows(in_order)
    assert {key: state[1] for key, state in expected.items()} == {
        (0, ORG_A_1): "downloadable", (0, ORG_A_2): "notpassing", (1, ORG_B_1): "revoked", (2, ORG_A_1): "downloadable"}
    assert expected[(2, ORG_A_1)][3] == NOW - 9 * DAY
    assert apply_events(messages, NOW).facts_changed == 0  # all of it again: nothing changes
    rng = random.Random(7)
    for run in range(1, 6):  # the same history of other users, delivered otherwise
        users = range(100 * run + 1, 100 * run + 4)
        stream = history(users)
        stream += rng.sample(stream, k=len(stream) // 2)  # some delivered twice
        rng.shuffle(stream)
        cuts = sorted(rng.sample(range(1, len(stream)), k=3))  # in four batches
        for batch in (stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)):
            apply_events(batch, NOW)
        assert rows(users) == expected


def test_a_batch_reads_and_writes_in_bulk_and_reports_each_changed_certificate():
    source = CertificateFacts()
    users = range(1, 51)
    certificates = {(user_id, course) for user_id in users for course in (ORG_A_1, ORG_B_1)}

    def updates(status, day):
        return [update for user_id, course in sorted(certificates)
                for update in source.updates(decode(certificate(user_id, course, status, NOW - day * DAY), NOW))]

    for status, day in (("generating", 3), ("downloadable", 2)):  # inserts, then updates
        with CaptureQueriesContext(connection) as queries:
            applied = source.apply(updates(status, day), LockedUsers(frozenset(users)))
        assert len(queries) <= 3, [query["sql"][:80] for query in queries]
        assert {(change.user_id, change.course_key) for change in applied.changed} == certificates
    assert source.apply(updates("generating", 3), LockedUsers(frozenset(users))).changed == []  # older: no change


@pytest.mark.parametrize(("message", "reason"), [
    (certificate(1, ORG_A_1, "downloadable", NOW), None),
    (certificate(0, ORG_A_1, "downloadable", NOW), "invalid_user_id"),
    (certificate(1, "library-v1:OrgA+Lib1", "downloadable", NOW), "invalid_course_key"),
    (certificate(1, ORG_A_1, "downloadable", NOW, mode="m" * 33), "value_too_long"),
    (certificate(1, ORG_A_1, "", NOW), "invalid_value"),
])
def test_a_payload_breaking_the_rules_is_dead_lettered_with_its_reason(message, reason):
    assert dead_letter_reason(message, NOW) == reason
