"""The ``groups-consumer`` console script.

``groups-consumer VERB ...`` runs the management command ``groups_VERB`` of this app (``-`` in a verb is
``_`` in its command; so a host Django project gets the same commands as ``manage.py groups_VERB``);
Django's own commands (``migrate``, ...) pass through unchanged.
"""

from __future__ import annotations

import os
import sys

VERBS = {
    "consume": "consume openedx-events from Kafka into facts and memberships",
    "scheduler": "run due fallback syncs and time-relative flips (long-running)",
    "status": "state and freshness of every group; consumer lag and dead letters",
    "replay": "re-read the topics from the beginning or a time, and converge",
    "apply": "create or update groups from a JSON file",
    "sync": "full sync of groups (all, or --group / --scope)",
    "members": "list the members of a group",
    "explain": "why a user is or is not in a group",
    "criteria": "registered criterion types, their plugin and config schema",
    "manual": "replace or extend a manual group's users from a CSV of ids or usernames",
    "serve": "the web process: REST API (/api/v1/), admin (/admin/), /health",
    "relay": "publish membership changes to Kafka from the outbox (long-running)",
    "publish-snapshot": "publish the current members of groups as 'joined' events, for a new subscriber",
}
DJANGO_VERBS = {"migrate": "create or upgrade the database schema", "showmigrations": "list migrations",
               "createsuperuser": "create an admin user (staff) for the admin and the API",
               "drf_create_token": "create (or -r replace) the API token of a user, for services"}


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: groups-consumer COMMAND [options]   (groups-consumer COMMAND --help for details)", ""]
    lines += [f"  {verb:<16}{text}" for verb, text in {**VERBS, **DJANGO_VERBS}.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "groups_consumer.settings")
    from django.core.management import execute_from_command_line

    verb, rest = argv[0], argv[1:]
    execute_from_command_line(["groups-consumer", f"groups_{verb.replace('-', '_')}" if verb in VERBS else verb, *rest])


if __name__ == "__main__":
    main()
