"""The REST API against its own OpenAPI schema, served live by the app: every operation, generated requests
(valid and invalid ones), no 5xx, and every answer's status code, content type and body as the schema says.

The schema is read from ``/api/v1/schema/``; requests go through the WSGI application into the test's database,
seeded with learners and groups, and name existing groups and users most of the time, so operations are exercised
past their 404s.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from groups_consumer import api
from groups_consumer.models import Group
from groups_consumer.wsgi import application
from tests.facts import OTHER_COURSE, course, group_doc, leaf, user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock_at_now")]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
LEARNERS = range(1, 9)
SEED = [
    group_doc({"all": [leaf("last_login", ">", days=10), leaf("course_grade", "<", percent=0.4)]},
              name="inactive-struggling", exclusive_set="engagement", priority=10),
    group_doc(leaf("course_grade", ">=", percent=0.4), name="doing-well", exclusive_set="engagement"),
    group_doc(leaf("manual", "in", user_ids=[1, 2, 99]), scope={"type": "instance"}, name="listed"),
    group_doc(leaf("enrollment_mode", "in", modes=["verified"]), name="verified", refresh="P1D"),
]
#: Examples per operation and generation mode, as staff; and as an anonymous or non-staff client.
#: The same requests on every run, so that the suite passes or fails by the code alone; set
#: CONFORMANCE_EXPLORE=1 to draw new ones each run (and look for what the fixed ones miss).
EXPLORE = os.environ.get("CONFORMANCE_EXPLORE") == "1"
STAFF_EXAMPLES, OTHERS_EXAMPLES = 50, 5


@pytest.fixture
def wsgi_in_test_transaction():
    """Django's WSGI handler closes the connection after each request, which would end the test's transaction:
    the test client suspends that, and so does this for the requests schemathesis sends to the app."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield application
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded():
    """Learners 1-8 in two courses with grades, modes and logins; the groups of ``SEED`` synced (members and a
    change log)."""
    for uid in LEARNERS:
        user(uid, login=20 if uid % 2 else 2, country=("FR", "US", None)[uid % 3])
        course(uid, grade=(0.1, 0.5, 0.9)[uid % 3], mode=("audit", "verified")[uid % 2])
        if uid > 4:
            course(uid, OTHER_COURSE, grade=0.7, passing=True)
    api.apply_definitions(SEED)


def token_for(username, *, staff):
    return f"Token {Token.objects.create(user=User.objects.create_user(username, is_staff=staff)).key}"


@pytest.fixture
def staff():
    """The headers of a staff user's requests (a DRF token)."""
    return {"Authorization": token_for("schemathesis-staff", staff=True)}


@pytest.fixture
def schema(wsgi_in_test_transaction, seeded, staff):
    """The live schema, as the app serves it to an authenticated client; cases are sent to the same app."""
    return schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", wsgi_in_test_transaction, headers=staff)


def operations(schema):
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 15, [op.label for op in found]
    return found


def realistic(data, case):
    """Most of the time, name a group and users that exist (ids drawn from the database as it is now; the manual
    group for manual lists) and send a valid group document."""
    if "id" in (case.path_parameters or {}) and data.draw(st.integers(0, 4)) < 4:
        groups = Group.objects.all()
        if case.operation.path.endswith("/manual/"):
            groups = groups.filter(rule__type="manual")
        ids = list(groups.order_by("id").values_list("id", flat=True)) or [1]
        case.path_parameters["id"] = ids[data.draw(st.integers(0, 999)) % len(ids)]  # the ids change: draw an index
    if "user_id" in (case.path_parameters or {}) and data.draw(st.integers(0, 3)) < 3:
        case.path_parameters["user_id"] = data.draw(st.sampled_from([*LEARNERS, 99]))
    if case.query and "user" in case.query and data.draw(st.integers(0, 3)) < 3:
        case.query["user"] = data.draw(st.sampled_from(list(LEARNERS)))
    if isinstance(case.body, dict) and "rule" in case.body and data.draw(st.integers(0, 2)) < 2:
        case.body = {**data.draw(st.sampled_from(SEED)),
                     "name": data.draw(st.text(min_size=1, max_size=40).map(str.strip).filter(bool)),
                     "priority": data.draw(st.integers(-(2**31), 2**31 - 1)),
                     "enabled": data.draw(st.booleans()), "frozen": data.draw(st.booleans())}


def reseed():
    """Put back the seeded groups that requests deleted or renamed."""
    if Group.objects.filter(name__in=[doc["name"] for doc in SEED]).count() < len(SEED):
        api.apply_definitions(SEED)


def exercise(operation, mode, headers, examples, expect=None):
    """Run ``examples`` generated cases of one operation (each answer's status code also passed to ``expect``,
    if given); the failure, if any, as text."""

    @given(data=st.data())
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=not EXPLORE)
    def run(data):
        case = data.draw(operation.as_strategy(generation_mode=mode))
        if mode.is_positive:
            realistic(data, case)
        reseed()
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        if expect is not None:
            expect(case.method, response.status_code)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid: an operation without parameters nor body
        return None
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
        return f"{operation.label} [{mode.value}]: {exc}"
    return None


def test_every_operation_conforms_to_the_schema_as_staff(schema, staff):
    failures = [failure for operation in operations(schema)
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                if (failure := exercise(operation, mode, staff, STAFF_EXAMPLES))]
    assert not failures, "\n\n".join(failures)


BIG = 2**70
HOSTILE = [  # (method, path, Case arguments; a group id given by the group's name): what broke the app, or could
    ("GET", "/api/v1/groups/{id}/", {"path_parameters": {"id": BIG}}),
    ("GET", "/api/v1/groups/{id}/members/", {"path_parameters": {"id": 2**63}, "query": {"cursor": "bm90IG91cnM="}}),
    ("GET", "/api/v1/groups/{id}/members/", {"path_parameters": {"id": "1.5"}}),
    ("GET", "/api/v1/users/{user_id}/groups/", {"path_parameters": {"user_id": BIG}}),
    ("GET", "/api/v1/users/{user_id}/groups/", {"path_parameters": {"user_id": "x"}}),
    ("GET", "/api/v1/users/{user_id}/changes/", {"path_parameters": {"user_id": 1}, "query": {"cursor": "%%"}}),
    ("GET", "/api/v1/users/{user_id}/changes/", {"path_parameters": {"user_id": 1},
                                                 "query": {"since": "0001-01-01T00:00:00+23:00"}}),
    ("GET", "/api/v1/groups/", {"query": {"page": BIG, "page_size": BIG}}),
    ("GET", "/api/v1/groups/", {"query": {"page": -1}}),
    ("GET", "/api/v1/groups/{id}/explain/", {"path_parameters": {"id": "inactive-struggling"}, "query": {"user": BIG}}),
    ("GET", "/api/v1/groups/{id}/explain/", {"path_parameters": {"id": "inactive-struggling"}}),
    ("POST", "/api/v1/groups/", {"body": {**SEED[2], "name": "big", "priority": BIG}}),
    ("POST", "/api/v1/groups/", {"body": {**SEED[2], "name": "n\x00ul"}}),
    ("POST", "/api/v1/groups/", {"body": {**SEED[2], "name": "nul", "exclusive_set": "\x00"}}),
    ("POST", "/api/v1/groups/", {"body": {**SEED[2], "name": "nul", "scope": {"type": "org", "key": "O\x00"}}}),
    ("POST", "/api/v1/groups/", {"body": {**SEED[2], "name": "long", "scope": {"type": "org", "key": "O" * 300}}}),
    ("POST", "/api/v1/groups/", {"body": group_doc(leaf("enrollment_mode", "in", modes=["a\x00"]), name="nul")}),
    ("POST", "/api/v1/groups/", {"body": group_doc(leaf("last_login", ">", days=10**9), name="far")}),
    ("POST", "/api/v1/groups/", {"body": group_doc(leaf("last_login", ">", days=BIG), name="far")}),
    ("POST", "/api/v1/groups/", {"body": group_doc(leaf("manual", "in", user_ids=[BIG]), name="big-ids")}),
    ("POST", "/api/v1/groups/preview/", {"body": group_doc(leaf("last_login", ">", days=10**9), name="far")}),
    ("PATCH", "/api/v1/groups/{id}/", {"path_parameters": {"id": "inactive-struggling"}, "body": {"priority": -BIG}}),
    ("PATCH", "/api/v1/groups/{id}/", {"path_parameters": {"id": "inactive-struggling"}, "body": [1]}),
    ("POST", "/api/v1/groups/{id}/manual/", {"path_parameters": {"id": "listed"}, "media_type": "application/json",
                                             "body": {"users": ["\u00b2", str(BIG)]}}),
    ("POST", "/api/v1/groups/{id}/manual/", {"path_parameters": {"id": "listed"}, "media_type": "text/csv",
                                             "body": "user_id\n1\n" + "9" * 5000 + "\n\u00b2\n"}),
    ("POST", "/api/v1/groups/{id}/manual/", {"path_parameters": {"id": "listed"}, "media_type": "text/csv",
                                             "body": b"\xff\xfe"}),
    ("POST", "/api/v1/groups/{id}/manual/", {"path_parameters": {"id": "listed"}, "media_type": "text/csv",
                                             "body": ""}),
]


def test_hostile_requests_are_answered_as_the_schema_says(schema, staff):
    """Huge numbers, NUL characters, out-of-range dates, non-ASCII digits, bad cursors: 4xx, never a 5xx."""
    ids = dict(Group.objects.values_list("name", "id"))
    failures = []
    for method, path, arguments in HOSTILE:
        named = arguments.get("path_parameters", {}).get("id")
        if named in ids:
            arguments = {**arguments, "path_parameters": {"id": ids[named]}}
        case = schema[path][method].Case(**arguments)
        try:
            response = case.call_and_validate(headers=staff, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{method} {path} {arguments}: {exc}")
        else:
            assert response.status_code < 500
    assert not failures, "\n\n".join(failures)


def anonymous_refused(method, status):
    assert status == 401, (method, status)


def reader_may_only_read(method, status):
    if method in {"GET", "HEAD", "OPTIONS"}:
        assert status not in {401, 403}, (method, status)
    else:
        assert status == 403, (method, status)


def test_anonymous_and_non_staff_answers_conform_too(schema):
    reader = {"Authorization": token_for("schemathesis-reader", staff=False)}
    failures = [failure for operation in operations(schema)
                for headers, expect in [({}, anonymous_refused), (reader, reader_may_only_read)]
                if (failure := exercise(operation, GenerationMode.POSITIVE, headers, OTHERS_EXAMPLES, expect))]
    assert not failures, "\n\n".join(failures)
