"""A replay's consumers in several processes: partitions replayed in parallel (``replay --processes N``).

Each process runs ``replay.replay_member`` on its share of the partitions, as a one-process replay does on
all of them; shares do not overlap and never move, so each message is applied once. Members report the
messages of each batch for the parent's progress, and their counters when they stop.

Spawned in fresh interpreters, the members set Django up from the inherited environment before importing
anything that touches models; this module imports none at its top for the same reason.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # nothing that touches models before django.setup() in a member
    from multiprocessing.process import BaseProcess

    from groups_consumer.pipeline.accounting import ConsumerStats
    from groups_consumer.pipeline.config import ConsumerConfig


class ReplayMemberFailed(RuntimeError):
    """A replay process stopped with an error (the others are stopped; replaying again converges)."""


def replay_in_processes(config: ConsumerConfig, shares: Sequence[Sequence[tuple[str, int]]], *,
                        since: datetime | None, until: datetime | None, idle_s: float,
                        on_progress: Callable[[int], None]) -> list[ConsumerStats]:
    """Run one member per share of (topic, partition) pairs, committing under ``config.group_id``, until each has
    been idle ``idle_s``; returns their counters. ``on_progress`` gets the messages of every batch any member
    applied."""
    context = multiprocessing.get_context("spawn")
    reports: multiprocessing.Queue[tuple[str, Any]] = context.Queue()
    members = [context.Process(target=_member, args=(config, list(share), since, until, idle_s, reports),
                               name=f"replay-{n}") for n, share in enumerate(shares)]
    processes = len(members)
    for member in members:
        member.start()
    stats: list[ConsumerStats] = []
    try:
        while len(stats) < processes:
            try:
                kind, value = reports.get(timeout=1.0)
            except queue.Empty:
                _check_alive(members, reports)
                continue
            if kind == "progress":
                on_progress(value)
            elif kind == "stopped":
                stats.append(value)
            else:
                raise ReplayMemberFailed(value)
    finally:
        failed = len(stats) < processes  # the others stop too
        for member in members:
            if failed:
                member.terminate()
            member.join(timeout=60)
            if member.is_alive():
                member.kill()
    return stats


def _check_alive(members: Sequence[BaseProcess], reports: multiprocessing.Queue[tuple[str, Any]]) -> None:
    """Raise when a member died without reporting (killed, or crashed before it could)."""
    for member in members:
        if member.exitcode not in (None, 0) and reports.empty():
            raise ReplayMemberFailed(f"{member.name} exited with code {member.exitcode}")


def _member(config: ConsumerConfig, partitions: list[tuple[str, int]], since: datetime | None,
            until: datetime | None, idle_s: float, reports: multiprocessing.Queue[tuple[str, Any]]) -> None:
    """One member's process: replays its partitions, then reports its counters."""
    import django

    django.setup()
    from django.db import connection

    from groups_consumer.pipeline.replay import replay_member

    try:
        stats = replay_member(config, partitions, since=since, until=until, idle_s=idle_s,
                              on_progress=lambda messages: reports.put(("progress", messages)))
        reports.put(("stopped", stats))
    except BaseException as exc:
        reports.put(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        connection.close()
