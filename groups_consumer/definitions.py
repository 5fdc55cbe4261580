"""Group definitions as JSON documents: the contract of ``groups-consumer apply`` and of the API.

``parse_definition`` refuses an invalid document with a DefinitionError naming the field, e.g.
``rule.all[1].config.percent: Input should be less than or equal to 1``. Documents are untrusted: the limits
of ``definition_limits`` are checked first (``decode`` checks JSON text before decoding it), so nothing
recursive or large is built from a document beyond them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from groups_consumer import definition_limits
from groups_consumer.engine.rules import Node, parse_rule
from groups_consumer.errors import DefinitionError
from groups_consumer.models import ScopeType
from groups_consumer.plugins.registry import CriterionRegistry
from groups_consumer.shared import CriterionScope, course_org


def _storable(text: str) -> str:
    """Text as the database can store it: PostgreSQL refuses NUL characters in text."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def _storable_json(value: Any) -> None:
    """Every key and string of a JSON value storable: PostgreSQL's jsonb refuses ``\\u0000`` too."""
    if isinstance(value, str):
        _storable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(str(key))
            _storable_json(item)
    elif isinstance(value, list):
        for item in value:
            _storable_json(item)


class ScopeDefinition(BaseModel):
    """``{"type": "instance"}``, ``{"type": "org", "key": "DemoX"}`` or
    ``{"type": "course", "key": "course-v1:..."}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: ScopeType
    key: str = Field(default="", max_length=255)

    @field_validator("key")
    @classmethod
    def _key_matches_type(cls, key: str, info: ValidationInfo) -> str:
        scope_type = info.data.get("type")
        if scope_type == ScopeType.INSTANCE and key:
            raise ValueError("an instance scope takes no key")
        if scope_type in (ScopeType.ORG, ScopeType.COURSE) and not key:
            raise ValueError(f"a {scope_type.value} scope needs a key")
        if scope_type == ScopeType.COURSE:
            course_org(key)
        return _storable(key)

    def as_criterion_scope(self) -> CriterionScope:
        """The scope as criteria see it."""
        return CriterionScope(self.type, self.key)


class GroupDefinition(BaseModel):
    """One group document. ``refresh`` (an ISO 8601 duration such as ``P7D``) overrides how often the fallback
    sync runs; a ``frozen`` group keeps its members: no event, sync or flip changes them."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255)
    scope: ScopeDefinition = ScopeDefinition(type=ScopeType.INSTANCE)
    rule: dict[str, Any]
    enabled: bool = True
    frozen: bool = False
    exclusive_set: str | None = Field(None, min_length=1, max_length=255)
    priority: int = Field(default=0, ge=-(2**31), le=2**31 - 1)  # the database's integer
    refresh: timedelta | None = None

    @field_validator("name", "exclusive_set")
    @classmethod
    def _no_surrounding_blanks(cls, value: str | None) -> str | None:
        if value is not None and value != value.strip():
            raise ValueError("must not start or end with blanks")
        return value if value is None else _storable(value)

    @field_validator("rule")
    @classmethod
    def _storable_rule(cls, rule: dict[str, Any]) -> dict[str, Any]:
        _storable_json(rule)
        return rule

    @field_validator("refresh")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value


def parse_definition(doc: Any, types: CriterionRegistry | None = None) -> tuple[GroupDefinition, Node]:
    """Validate one group document, rule included."""
    if not isinstance(doc, dict):
        raise DefinitionError("(document)", "a group definition must be a JSON object")
    definition_limits.check_document(doc)
    try:
        definition = GroupDefinition.model_validate(doc)
    except pydantic.ValidationError as exc:
        (field, message), *more = [(".".join(str(p) for p in error["loc"]) or "(document)", error["msg"])
                                   for error in exc.errors()]
        invalid = DefinitionError(field, message, more)
        raise DefinitionError.merged([invalid, *_rule_errors(doc, invalid, types)]) from exc
    return definition, parse_rule(definition.rule, definition.scope.as_criterion_scope(), types)


def _rule_errors(doc: dict[str, Any], invalid: DefinitionError,
                 types: CriterionRegistry | None) -> list[DefinitionError]:
    """The rule's own errors, when the document's other fields are what failed (so that every bad field is
    named at once): none if the scope or the rule itself is invalid, since the rule is checked in its scope."""
    if "rule" not in doc or any(path.split(".")[0] in {"scope", "rule"} for path, _ in invalid.errors):
        return []
    scope = ScopeDefinition.model_validate(doc.get("scope", {"type": ScopeType.INSTANCE}))
    try:
        parse_rule(doc["rule"], scope.as_criterion_scope(), types)
    except DefinitionError as exc:
        return [exc]
    return []


def parse_documents(data: Any, types: CriterionRegistry | None = None) -> list[tuple[GroupDefinition, Node]]:
    """A document or a list of documents; errors in a list are prefixed with the item's index."""
    if not isinstance(data, list):
        return [parse_definition(data, types)]
    definition_limits.check_documents(data)
    parsed = []
    for i, doc in enumerate(data):
        try:
            parsed.append(parse_definition(doc, types))
        except DefinitionError as exc:
            raise exc.prefixed(f"[{i}].") from exc
    names = [(d.scope, d.name) for d, _ in parsed]
    for i, key in enumerate(names):
        if key in names[:i]:
            raise DefinitionError(f"[{i}].name", f"{key[1]!r} appears twice for scope {key[0].as_criterion_scope()}")
    return parsed


def decode(text: str | bytes) -> Any:
    """JSON text (a file, a request body) as data for ``parse_documents``: DefinitionError when the text is
    beyond the limits (checked before decoding), ValueError (``json.JSONDecodeError``) when it is not JSON."""
    if isinstance(text, bytes):
        text = text.decode()
    definition_limits.check_text(text)
    return json.loads(text)
