"""The obvious implementation, as the baseline: on each event, update the facts, then recompute every group
that uses an affected criterion over its whole population (the same routing as the service, but no
per-user targeting and no batching)."""

from __future__ import annotations

import time

from django.db import transaction
from django.utils import timezone

from bench.measures import Rate, consumer_config
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.membership_writer import reconcile
from groups_consumer.models import Cause
from groups_consumer.pipeline.decode import EventDecoder, message_headers
from groups_consumer.pipeline.facts_update import FactUpdater
from groups_consumer.pipeline.route import EventRouter
from groups_consumer.plugins import registry
from groups_consumer.plugins.events import Origin
from groups_consumer.shared import EVERYONE


def naive_events_per_s(bootstrap_servers: str, topic: str, count: int, budget_s: float = 30.0) -> float:
    """Events per second of the naive loop over the first events of the stream (for at most ``budget_s``)."""
    catalog = GroupCatalog.load()
    updater = FactUpdater(registry.fact_sources())
    router = EventRouter(catalog, updater.scope_events)
    consumer = consumer_config(bootstrap_servers, topic).new_consumer()
    consumer.subscribe([topic])
    decoder, rate = EventDecoder(), Rate()
    deadline = None
    try:
        while rate.total < count and (deadline is None or time.monotonic() < deadline):
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            deadline = deadline or time.monotonic() + budget_s
            event = decoder.decode(message.value(), message_headers(message), Origin.of(message))
            now = timezone.now()
            with transaction.atomic():
                changed = updater.apply(updater.updates_from(event, [])).changed
                groups = {g.id: g for change in changed for g in router.groups_for(change)}
                targets = catalog.with_exclusive_siblings(groups.values())
                if targets:
                    members = {g.id: g.members(now).resolve(EVERYONE) for g in targets}
                    reconcile(catalog, members, EVERYONE, cause=Cause.EVENT, cause_id=event.event_id, now=now)
            consumer.commit(message=message, asynchronous=False)
            rate.batch(1)
    finally:
        consumer.close()
    return rate.per_second()
