"""A fact-source plugin package installed beside the service, every part a process of its own.

The example package ``groups-consumer-certificates`` (``examples/certificates``) is pip-installed into a
directory of its own, put on ``PYTHONPATH`` as an operator installs a plugin, and then: ``migrate`` creates its
table, ``criteria`` lists its criterion with its package, groups use it alone and beside built-in criteria,
LMS-format events (registrations, enrollments, certificates created / changed / revoked; some delivered twice,
all shuffled, one breaking the payload rules) flow through the broker into ``groups-consumer consume``, and the
memberships are what the events say and what a full recompute finds. Without the package on the path, only
the groups that use its criterion are broken, with the reason. The package's own tests run against the
installed package.
"""

import json
import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opaque_keys.edx.keys import CourseKey
from openedx_events.learning.data import CertificateData, CourseData
from openedx_events.learning.signals import CERTIFICATE_CHANGED, CERTIFICATE_CREATED, CERTIFICATE_REVOKED

from groups_consumer.testing import Message, lms_message
from tests import lms
from tests.facts import leaf
from tests.test_consumer_processes import (
    database_url,  # noqa: F401 (a fixture: a database of the test's own)
    environment,
    run,
)

pytestmark = pytest.mark.slow
PACKAGE = Path(__file__).parent.parent / "examples" / "certificates"
A1, A2, B1 = "course-v1:OrgA+C1+R", "course-v1:OrgA+C2+R", "course-v1:OrgB+C1+R"
CERTIFICATE_SIGNALS = {"created": CERTIFICATE_CREATED, "changed": CERTIFICATE_CHANGED, "revoked": CERTIFICATE_REVOKED}
#: The groups, and their members among the scripted users 1-8 (``scripted_history``).
GROUPS = {
    "orga-certified": ({"type": "org", "key": "OrgA"}, leaf("certificates", ">="), {1, 2, 4, 6}),
    "orga-double": ({"type": "org", "key": "OrgA"}, leaf("certificates", ">=", count=2), {1}),
    "orga-uncertified": ({"type": "org", "key": "OrgA"}, {"not": leaf("certificates", ">=")}, {3, 7}),
    "verified-certified": ({"type": "course", "key": A1}, {"all": [
        leaf("certificates", ">="), leaf("enrollment_mode", "in", modes=["verified"])]}, {1, 4, 6}),
    "recently-certified": ({"type": "instance"}, leaf("certificates", ">=", within_days=30), {1, 2, 4, 5, 8}),
    "verified-a1": ({"type": "course", "key": A1}, leaf("enrollment_mode", "in", modes=["verified"]), {1, 3, 4, 6}),
}


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """A copy of the example package (building it writes build files next to its sources)."""
    copy = tmp_path_factory.mktemp("certificates") / "certificates"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*"))
    return copy


@pytest.fixture(scope="module")
def site(package, tmp_path_factory) -> Path:
    """The package installed into a directory of its own, as ``pip install`` puts it in a virtualenv."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(package)], check=True, capture_output=True)
    return target


def with_package(env: dict[str, str], site: Path) -> dict[str, str]:
    """``env`` with the installed package on the path (after what is there: the suite's clock shift, if any)."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(site)]))}


def certificate(user_id: int, course_key: str, status: str, time: datetime, kind: str = "changed") -> Message:
    """A certificate event as the LMS sends it, keyed by course."""
    return lms_message(CERTIFICATE_SIGNALS[kind], time, "certificate.course.course_key", certificate=CertificateData(
        user=lms.user_data(user_id), course=CourseData(course_key=CourseKey.from_string(course_key)),
        mode="verified", grade="0.9", download_url="", name=f"User {user_id}", current_status=status))


def scripted_history(t) -> list[Message]:
    """Users 1-8, whose memberships ``GROUPS`` states; ``t(days)`` is that many days ago."""
    enrollments = {1: [(A1, "verified"), (A2, "audit")], 2: [(A1, "audit")], 3: [(A1, "verified")],
                   4: [(A1, "verified")], 5: [(B1, "audit")], 6: [(A1, "verified")], 7: [(A2, "audit")],
                   8: [(A1, "verified")]}
    messages = [lms.registration(u, t(90)).wire() for u in enrollments]
    messages += [lms.enrollment(u, course, t(80), mode).wire() for u, courses in enrollments.items()
                 for course, mode in courses]
    return [*messages,
            certificate(1, A1, "downloadable", t(40), "created"), certificate(1, A2, "downloadable", t(5), "created"),
            certificate(2, A1, "downloadable", t(3), "created"),
            certificate(3, A1, "downloadable", t(10), "created"), certificate(3, A1, "unavailable", t(2), "revoked"),
            certificate(4, A1, "notpassing", t(20)), certificate(4, A1, "downloadable", t(6)),
            certificate(4, B1, "downloadable", t(1), "created"),  # not enrolled in B1: counts in instance scope only
            certificate(5, B1, "downloadable", t(4), "created"),
            certificate(6, A1, "downloadable", t(60), "created"),
            certificate(8, A1, "downloadable", t(8), "created"), lms.enrollment(8, A1, t(1), kind="unenrolled").wire()]


def random_history(t, rng: random.Random) -> list[Message]:
    """Users 100-159 doing anything, for the full recompute to check."""
    messages = []
    for user_id in range(100, 160):
        for course in rng.sample([A1, A2, B1], k=rng.randint(1, 3)):
            messages.append(lms.enrollment(user_id, course, t(rng.randint(1, 90)), rng.choice(["audit", "verified"]),
                                           kind=rng.choice(["created", "changed", "unenrolled"])).wire())
            messages += [certificate(user_id, course, rng.choice(["downloadable", "notpassing"]), t(rng.randint(0, 60)),
                                     rng.choice(["created", "changed", "revoked"])) for _ in range(rng.randint(0, 3))]
    return messages


def test_a_fact_source_package_installs_consumes_and_agrees_with_the_full_recompute(
        config, database_url, site, tmp_path):  # noqa: F811 (the imported fixture)
    env = with_package(environment(config, database_url), site)
    run(env, "migrate", "--no-input")
    assert "[X] 0001_initial" in run(env, "showmigrations", "certificate_facts").stdout
    listing = json.loads(run(env, "criteria", "--json").stdout)
    criterion = next(entry for entry in listing["criteria"] if entry["name"] == "certificates")
    source = next(entry for entry in listing["fact_sources"] if entry["name"] == "certificates")
    assert criterion["package"] == source["package"] == "groups-consumer-certificates"
    assert criterion["backend"] == "certificates" and criterion["time_relative"]
    assert sorted(criterion["events"]) == sorted(source["events"]) == [
        f"org.openedx.learning.certificate.{kind}.v1" for kind in ("changed", "created", "revoked")]
    assert source["tables"] == ["certificate_facts_certificatefact"]
    definitions = tmp_path / "groups.json"
    definitions.write_text(json.dumps([{"name": name, "scope": scope, "rule": rule}
                                       for name, (scope, rule, _members) in GROUPS.items()]))
    run(env, "apply", str(definitions))

    start = datetime.now(UTC) - timedelta(hours=1)  # the consumer and the syncs evaluate at their own clock

    def t(days: int) -> datetime:
        return start - timedelta(days=days)
    rng = random.Random(5)
    messages = scripted_history(t) + random_history(t, rng)
    messages += rng.sample(messages, k=len(messages) // 4)  # delivered twice
    messages.append(certificate(9, "library-v1:OrgA+Lib", "downloadable", t(1), "created"))  # no course key
    rng.shuffle(messages)
    producer = config.new_producer()
    for key, value, headers in messages:
        producer.produce(config.topics[0], key=key, value=value, headers=headers)
    assert producer.flush(10) == 0

    consumer = run(env, "consume", "--exit-when-idle", "5")
    stopped = json.loads(next(line for line in consumer.stderr.splitlines() if '"consumer_stopped"' in line))
    assert stopped["messages"] == len(messages)
    assert json.loads(run(env, "status", "--json").stdout)["consumer"]["dead_letters_by_reason"] == {
        "invalid_course_key": 1}
    members = {name: {m["user_id"] for m in json.loads(run(env, "members", name, "--json").stdout)["members"]}
               for name in GROUPS}
    assert {name: found & set(range(1, 10)) for name, found in members.items()} == {
        name: expected for name, (_scope, _rule, expected) in GROUPS.items()}
    assert all(found - set(range(1, 10)) for found in members.values()), "the random users should count too"
    assert "0 joined, 0 left" in run(env, "sync").stdout  # the full recompute finds nothing to change
    explained = run(env, "explain", "--user", "1", "--group", "orga-double").stdout
    assert f"2 earned: {A1}, {A2}" in explained

    # The package uninstalled: the groups using its criterion are broken, with the reason; the others work.
    groups = json.loads(run(environment(config, database_url), "status", "--json").stdout)["groups"]
    broken = {group["name"]: group["broken_reason"] for group in groups if group["state"] == "broken"}
    assert broken.keys() == GROUPS.keys() - {"verified-a1"}
    assert all("'certificates' is not installed" in reason for reason in broken.values())


def test_the_packages_own_tests_pass_against_the_installed_package(
        package, site, database_url):  # noqa: F811 (the imported fixture)
    env = with_package({**os.environ, "DATABASE_URL": database_url}, site)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=package, env=env,
                           capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout
