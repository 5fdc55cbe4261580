"""Shared pieces of the management commands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError, CommandParser

from groups_consumer import api
from groups_consumer.errors import AmbiguousGroup, DefinitionError, GroupsError, UnknownGroup
from groups_consumer.models import Group


class GroupsCommand(BaseCommand):
    """A management command that shows as ``groups-consumer VERB`` and turns user errors into CommandError.

    Of Django's system checks it runs the models' only: the others (URLs, templates, security) are about the web
    service (``serve`` runs them all), and the URL check alone imported the whole REST API, half a second of
    every command's start.
    """

    requires_system_checks: list[str] | tuple[str, ...] | Literal["__all__"] = (Tags.models,)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        verb = subcommand.removeprefix("groups_").replace("_", "-")
        return super().create_parser("groups-consumer" if prog_name == "groups-consumer" else prog_name,
                                     verb if prog_name == "groups-consumer" else subcommand, **kwargs)

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except (DefinitionError, UnknownGroup, AmbiguousGroup, GroupsError) as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def add_scope_argument(parser: CommandParser) -> None:
        """``--scope instance | org:KEY | course:KEY``."""
        parser.add_argument("--scope", help="instance, org:KEY or course:KEY")

    @staticmethod
    def group_from(options: Mapping[str, Any]) -> Group:
        """The group named by ``group`` and ``--scope``."""
        return api.find_group(options["group"], api.parse_scope(options["scope"]))
