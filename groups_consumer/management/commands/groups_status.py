"""``groups-consumer status [--json]``."""

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from groups_consumer.management.base import GroupsCommand
from groups_consumer.status import ServiceStatus, collect


class Command(GroupsCommand):
    """Per group: state, members, last event, last sync, staleness, next due sync, drift and (time-relative
    groups) how far time has been checked; per consumer partition: position, lag and dead letters (and the dead
    letters by reason)."""

    help = "Show the state and freshness of every group and the consumers' lag and dead letters."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON document, for machines")

    def handle(self, *args: Any, **options: Any) -> None:
        status = collect(timezone.now())
        if options["json"]:
            self.stdout.write(json.dumps(status.as_json(), indent=2))
        else:
            self.stdout.write(render(status))


def render(status: ServiceStatus) -> str:
    """The status as two text tables."""
    rows = [("GROUP", "SCOPE", "STATE", "MEMBERS", "LAST EVENT", "LAST SYNC", "STALENESS", "NEXT SYNC", "DRIFT",
             "TIME CHECKED")]
    for g in status.groups:
        staleness = _age(g.staleness_s) + (" STALE" if g.stale else "") if g.staleness_s is not None else \
            ("never synced" + (" STALE" if g.stale else ""))
        rows.append((g.name, g.scope, g.state, str(g.members), _when(g.last_event_at, status.now),
                     _when(g.last_sync, status.now), staleness,
                     _when(g.next_sync_due, status.now) if g.next_sync_due else "not scheduled", _drift(g.drift),
                     _when(g.time_checked_until, status.now)))
    lines = _table(rows)
    lines += [f"  {g.name} ({g.scope}): {g.broken_reason}" for g in status.groups if g.broken_reason]
    lines.append("")
    if status.partitions:
        parts = [("CONSUMER GROUP", "PARTITION", "POSITION", "LAG", "DEAD LETTERS", "REPORTED", "BY")]
        parts += [(p.consumer_group, f"{p.topic}[{p.partition}]", _text(p.position), _text(p.lag),
                   str(p.dead_letters), _when(p.reported_at, status.now), p.consumer) for p in status.partitions]
        lines += _table(parts)
        reasons = ", ".join(f"{reason} {count}" for reason, count in status.dead_letter_reasons.items())
        lines.append(f"total lag {status.total_lag}, dead letters {status.dead_letters}"
                     + (f" ({reasons})" if reasons else ""))
    else:
        lines.append("no consumer has reported yet")
    backlog = status.outbox_backlog
    if status.publishing_topic or backlog.pending:
        lines.append(f"membership events to {status.publishing_topic or '(publishing off)'}: "
                     f"{backlog.pending} waiting in the outbox"
                     + (f", the oldest for {_age(backlog.oldest_age_s)}" if backlog.pending else ""))
    return "\n".join(lines)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _when(instant: datetime | None, now: datetime) -> str:
    if instant is None:
        return "-"
    delta = (now - instant).total_seconds()
    return f"{_age(delta)} ago" if delta >= 0 else f"in {_age(-delta)}"


def _age(seconds: float) -> str:
    delta = timedelta(seconds=round(seconds))
    if delta.days:
        return f"{delta.days}d{delta.seconds // 3600}h"
    hours, rest = divmod(delta.seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _drift(drift: Mapping[str, Any] | None) -> str:
    if drift is None:
        return "-"
    return f"+{drift['joined']} -{drift['left']}" if drift["joined"] or drift["left"] else "0"


def _text(value: object) -> str:
    return "-" if value is None else str(value)
