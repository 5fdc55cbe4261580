"""Fact sources as plugins: the built-in one registered like any other, the checks at registration and at
start-up, and what a wrong plugin breaks (only what uses it)."""

from functools import partial
from typing import ClassVar

import pytest
from openedx_events.learning.signals import CERTIFICATE_CREATED, FORUM_THREAD_CREATED, SESSION_LOGIN_COMPLETED
from pydantic import field_validator
from structlog.testing import capture_logs

from criteria.last_login import LastLogin
from groups_consumer import api, bulk_sql, plugin_checks
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.full_sync import full_sync
from groups_consumer.errors import DecodeError, GroupsError
from groups_consumer.facts import events as learner_events
from groups_consumer.facts.backend import FactTableBackend
from groups_consumer.models import Group, Membership, Scope, UserFact
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.plugin_checks import check_plugins, installed_plugins
from groups_consumer.plugins import registry
from groups_consumer.plugins.events import EventPayload, EventSpec
from groups_consumer.plugins.registry import Plugin
from groups_consumer.plugins.source import Applied, FactSource, FactUpdate
from tests import lms
from tests.facts import NOW, leaf, user


def install_source(plugin):
    """Register a fact source as its entry point would, and drop what was built before it came."""
    registry.fact_source_classes().add(plugin, check=registry._check_fact_source)
    for cached in (registry.backend_classes, registry.backend, registry.fact_sources):
        cached.cache_clear()


def test_the_learner_facts_are_a_fact_source_registered_by_entry_point():
    [source] = registry.fact_sources()
    assert isinstance(source, FactTableBackend) and registry.backend("facts") is source
    plugin = registry.fact_source_classes().plugins["facts"]
    assert plugin.source == "groups-consumer" and plugin.target == "groups_consumer.facts.backend:FactTableBackend"
    assert {spec.event_type for spec in registry.event_specs()} == {
        spec.event_type for spec in learner_events.LEARNER_EVENTS}
    assert source.tables() == ["groups_consumer_userfact", "groups_consumer_coursefact"]


class _Certificates(FactSource):
    """A source whose parts the tests below break one at a time."""

    name = "certs"
    events = (EventSpec(CERTIFICATE_CREATED),)
    models = (UserFact,)

    def updates(self, event):
        return []

    def apply(self, updates, users):
        return Applied()

    def snapshots(self, user_ids):
        return {}


class _ForumPosts(_Certificates):
    events = (EventSpec(FORUM_THREAD_CREATED),)


class _NoModels(_Certificates):
    models = ()


class _NoApply(FactSource):
    name = "certs"
    events = (EventSpec(CERTIFICATE_CREATED),)
    models = (UserFact,)

    def updates(self, event):
        return []

    def snapshots(self, user_ids):
        return {}


@pytest.mark.parametrize(("plugin", "reason"), [
    (_ForumPosts, "event org.openedx.learning.forum.thread.created.v1: no Avro schema can be derived"),
    (_NoModels, "models is not a non-empty tuple of Django model classes"),
    (_NoApply, "does not implement apply"),
    (LastLogin, "is not a FactSource subclass"),
])
def test_a_wrong_fact_source_is_refused_at_registration_naming_its_package(plugin, reason):
    sources = registry.fact_source_classes()
    with capture_logs() as logs:
        sources.add(Plugin("certs", plugin, "acme.certs:Source", "acme-certs"), check=registry._check_fact_source)
    assert "certs" not in sources.plugins
    failure = next(entry for entry in logs if entry["event"] == "plugin_load_failed")
    assert "acme.certs:Source (package acme-certs)" in failure["reason"] and reason in failure["reason"]


def test_a_fact_source_adds_its_events_to_what_the_consumer_decodes():
    install_source(Plugin("certs", _Certificates, "acme.certs:Source", "acme-certs"))
    assert CERTIFICATE_CREATED.event_type in EventDecoder().event_types
    assert "certs" in {source.name for source in registry.fact_sources()}


class _ListensToCertificates(LastLogin):
    name = "certified"
    events = frozenset({CERTIFICATE_CREATED.event_type})


class _ReadsCertificates(LastLogin):
    name = "certified"
    backend = "certs"


@pytest.mark.parametrize(("plugin", "reason"), [
    (_ListensToCertificates, "listens to org.openedx.learning.certificate.created.v1, which no available fact "
                             "source consumes"),
    (_ReadsCertificates, "reads 'certs', which is unavailable: 'certs' is not installed (no entry point 'certs' in "
                         "groups_consumer.fact_sources or groups_consumer.backends)"),
])
@pytest.mark.django_db
def test_a_criterion_without_its_events_or_source_breaks_only_its_groups(plugin, reason):
    user(1, login=30)
    registry.criterion_types().add(Plugin("certified", plugin, "acme.certs:Certified", "acme-certs"),
                                   check=registry._check_criterion_type)
    scope = Scope.objects.create(type="instance", key="")
    broken = Group.objects.create(name="certified", scope=scope, rule=leaf("certified", ">", days=10))
    healthy = Group.objects.create(name="inactive", scope=scope, rule=leaf("last_login", ">", days=10))
    catalog = GroupCatalog.load()
    full_sync(catalog, catalog.groups.values(), now=NOW)
    broken.refresh_from_db()
    assert "acme.certs:Certified (package acme-certs)" in broken.broken_reason and reason in broken.broken_reason
    assert list(Membership.objects.filter(group=healthy).values_list("user_id", flat=True)) == [1]
    [problem] = [entry for entry in installed_plugins()["unavailable"] if entry["name"] == "certified"]
    assert reason in problem["error"]


class _MigratedLater(_Certificates):
    """A source whose app (its tables) the database does not have yet."""

    @classmethod
    def app_label(cls):
        return "certificate_facts"


@pytest.mark.django_db
def test_a_source_whose_migrations_are_not_applied_is_left_out_at_start_up(monkeypatch):
    """Its events are dead-lettered as source_unavailable (not counted as bad messages) and the groups reading it
    are broken; the rest works."""
    registry.fact_source_classes().add(Plugin("certs", _MigratedLater, "acme.certs:Source", "acme-certs"),
                                       check=registry._check_fact_source)
    registry.criterion_types().add(Plugin("certified", _ReadsCertificates, "acme.certs:Certified", "acme-certs"),
                                   check=registry._check_criterion_type)
    monkeypatch.setattr(plugin_checks, "_unmigrated_apps", lambda: {
        "certificate_facts": "1 migration(s) of app 'certificate_facts' not applied"})
    with capture_logs() as logs:
        check_plugins()
    [unavailable] = [entry for entry in logs if entry["event"] == "fact_source_unavailable"]
    assert unavailable["source"] == "certs" and unavailable["package"] == "acme-certs"
    assert [source.name for source in registry.fact_sources()] == ["facts"]
    _key, value, headers = lms.certificate(1, NOW).wire()
    with pytest.raises(DecodeError) as refused:
        EventDecoder().decode(value, headers)
    assert refused.value.reason == "source_unavailable" and not refused.value.poison
    assert "fact source 'certs' is unavailable: 1 migration(s)" in str(refused.value)
    assert "not applied" in (registry.criterion_problem("certified") or "")
    assert registry.criterion_problem("last_login") is None


class _FailsToStart(_Certificates):
    """A source whose constructor raises (a service it needs is down)."""

    def __init__(self):
        raise ConnectionError("certificate service down")


@pytest.mark.django_db
def test_the_events_of_a_source_that_fails_to_start_are_dead_lettered_as_unavailable():
    """Even in a process that decodes before anything else asked for the sources (no start-up check ran)."""
    registry.fact_source_classes().add(Plugin("certs", _FailsToStart, "acme.certs:Source", "acme-certs"),
                                       check=registry._check_fact_source)
    _key, value, headers = lms.certificate(1, NOW).wire()
    with pytest.raises(DecodeError) as refused:
        EventDecoder().decode(value, headers)
    assert refused.value.reason == "source_unavailable" and not refused.value.poison
    assert "fact source 'certs' is unavailable: failed to start: ConnectionError" in str(refused.value)


@pytest.mark.django_db
def test_the_service_s_own_migrations_not_applied_stop_the_command(monkeypatch):
    monkeypatch.setattr(plugin_checks, "_unmigrated_apps", lambda: {
        "groups_consumer": "1 migration(s) of app 'groups_consumer' not applied"})
    with pytest.raises(GroupsError, match="the database is not up to date: 1 migration"):
        check_plugins()


@pytest.mark.django_db
def test_the_migration_check_reads_the_database():
    assert plugin_checks._unmigrated_apps() == {}


class _LoginCounter(FactSource):
    """A plugin source sharing the login events with the built-in one, with a bug only user 13 reaches and
    stricter payload rules than the built-in ones (no user 99)."""

    name = "logins"
    models = (UserFact,)
    applied: ClassVar[list[int]] = []

    class Payload(EventPayload):
        user: dict

        @field_validator("user")
        @classmethod
        def not_99(cls, user):
            if user["id"] == 99:
                raise ValueError("user 99 is not counted")
            return user

    events = (EventSpec(SESSION_LOGIN_COMPLETED, Payload),)

    def updates(self, event):
        return [FactUpdate(event, event.data["user"]["id"], "login", event.time)]

    def apply(self, updates, users):
        if any(update.user_id == 13 for update in updates):
            UserFact.objects.filter(user_id__in=users.ids).update(username="written before the bug")
            raise ZeroDivisionError("a bug only user 13 reaches")
        _LoginCounter.applied += [update.user_id for update in updates]
        return Applied()

    def snapshots(self, user_ids):
        return {}


@pytest.mark.django_db
def test_a_source_s_failure_is_its_own_the_others_apply_the_event():
    install_source(Plugin("logins", _LoginCounter, "acme.logins:Counter", "acme-logins"))
    _LoginCounter.applied = []
    decoder = EventDecoder(clock=lambda: NOW)
    events = [decoder.decode(*lms.login(user_id, NOW).wire()[1:]) for user_id in (11, 12, 13, 14, 99)]
    assert set(events[-1].refused_by) == {"logins"} and not events[-1].refused_by["logins"].poison

    result = BatchProcessor(GroupCatalog.load()).process(events, now=NOW)

    assert sorted(UserFact.objects.values_list("user_id", flat=True)) == [11, 12, 13, 14, 99]  # the built-in source
    assert not UserFact.objects.filter(username="written before the bug").exists()  # the savepoint undid it
    assert sorted(_LoginCounter.applied) == [11, 12, 14]
    failures = {(failure.event.data["user"]["id"], failure.source, failure.error.reason)
                for failure in result.source_failures}
    assert failures == {(13, "logins", "source_failed"), (99, "logins", "invalid_value")}
    assert all(not failure.error.poison for failure in result.source_failures)
    [bug] = [f for f in result.source_failures if f.error.reason == "source_failed"]
    assert "fact source 'logins' (apply): ZeroDivisionError: a bug only user 13 reaches" in bug.error.detail


class _DeferredWriter(FactSource):
    """A plugin source leaving its writes to the batch (``Applied.writes``), one of which the database refuses:
    it names no user's username, which may not be NULL."""

    name = "nicknames"
    models = (UserFact,)
    events = (EventSpec(SESSION_LOGIN_COMPLETED, EventPayload),)

    def updates(self, event):
        return [FactUpdate(event, event.data["user"]["id"], "nickname", f"nick{event.data['user']['id']}")]

    def apply(self, updates, users):
        rows = [[None if update.user_id == 13 else update.value, update.user_id] for update in updates]
        return Applied(writes=[partial(bulk_sql.update, UserFact, ["user_id"], ["username"], rows)])

    def snapshots(self, user_ids):
        return {}


@pytest.mark.django_db
def test_a_deferred_write_the_database_refuses_fails_only_its_source_and_its_event():
    install_source(Plugin("nicknames", _DeferredWriter, "acme.nicknames:Source", "acme-nicknames"))
    api.apply_definitions({"name": "recent", "rule": leaf("last_login", "<=", days=1)}, now=NOW)
    decoder = EventDecoder(clock=lambda: NOW)
    events = [decoder.decode(*lms.login(user_id, NOW).wire()[1:]) for user_id in (11, 12, 13, 14)]

    with capture_logs() as logs:
        result = BatchProcessor(GroupCatalog.load()).process(events, now=NOW)

    # Run by the batch after every source applied (and, on PostgreSQL, sent without waiting for the answer),
    # the refused write fails the attempt; the batch is applied again with each source isolated, and each
    # source's writes run in its savepoint, which finds the event.
    assert [(f.event.data["user"]["id"], f.source, f.error.reason) for f in result.source_failures] == [
        (13, "nicknames", "source_failed")]
    assert "IntegrityError" in result.source_failures[0].error.detail
    assert dict(UserFact.objects.values_list("user_id", "username")) == {
        11: "nick11", 12: "nick12", 13: "user13", 14: "nick14"}  # user 13's own username, from the login
    assert set(api.find_group("recent").memberships.values_list("user_id", flat=True)) == {11, 12, 13, 14}
    assert [entry["source"] for entry in logs if entry["event"] == "fact_source_failed_isolating"] == [
        "a deferred write"]
