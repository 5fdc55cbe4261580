"""Errors a user of groups-consumer can act on."""

from __future__ import annotations

from collections.abc import Sequence


class DefinitionError(ValueError):
    """A group definition is invalid. ``field`` is the path of the offending field, e.g. ``rule.all[1].config``;
    ``errors`` lists every (path, message) found, the first being ``field`` and ``message``."""

    def __init__(self, field: str, message: str, more: Sequence[tuple[str, str]] = ()):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors = [(field, message), *more]

    @classmethod
    def merged(cls, errors: Sequence[DefinitionError]) -> DefinitionError:
        """One error holding every (path, message) of ``errors``, in their order."""
        (field, message), *more = [error for each in errors for error in each.errors]
        return cls(field, message, more)

    def prefixed(self, prefix: str) -> DefinitionError:
        """The same errors with ``prefix`` before every path (an item of a list: ``[1].``)."""
        (field, message), *more = [(f"{prefix}{path}", text) for path, text in self.errors]
        return DefinitionError(field, message, more)


class UnknownGroup(LookupError):
    """No group has that name (in that scope)."""


class AmbiguousGroup(LookupError):
    """Several scopes hold a group of that name; a scope must be given."""


class GroupsError(Exception):
    """An operation could not be carried out now (for example, another process holds the group's sync)."""


class DecodeError(Exception):
    """A message cannot be applied as it is (undecodable, values no LMS sends, or applying it failed);
    ``reason`` is a short machine-readable code for the dead-letter header, ``detail`` says what is wrong and
    ``exception`` names the exception class of an apply-time failure. ``poison`` is False when the message itself
    is sound and only one plugin could not take it (it does not count against the dead-letter limit)."""

    def __init__(self, reason: str, detail: str, exception: str | None = None, *, poison: bool = True):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.exception = exception
        self.poison = poison
