"""Errors a user of groups-consumer can act on."""


class DefinitionError(ValueError):
    """A group definition is invalid. ``field`` is the path of the offending field, e.g. ``rule.all[1].config``."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownGroup(LookupError):
    """No group has that name (in that scope)."""


class AmbiguousGroup(LookupError):
    """Several scopes hold a group of that name; a scope must be given."""


class GroupsError(Exception):
    """An operation could not be carried out now (for example, another process holds the group's sync)."""
