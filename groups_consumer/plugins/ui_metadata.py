"""Form metadata of a criterion's config, derived from its pydantic model, so a UI can build the form.

Each config field becomes one element in the shape of the plugin-architecture decision (seed 004): ``name``,
``label``, ``type`` (``string``, ``integer``, ``number``, ``checkbox``, ``select``, ``list``), ``required``,
``tooltip``, ``initial_value``, ``depends_on``, ``max_count``, ``disabled``, plus ``options`` for a select.
Everything is derived: the label from the field's title or name, the tooltip from its description, the
initial value from its default, the type and options from its annotation (a ``Literal`` or an enum is a
select). A criterion author refines any of it through the field's ``json_schema_extra``::

    percent: float = Field(ge=0, le=1, description="grade as a fraction",
                           json_schema_extra={"ui": {"label": "Grade", "initial_value": 0.5}})
    modes: list[str] = Field(json_schema_extra={"ui": {"type": "select", "options": ["audit", "verified"],
                                                        "depends_on": {"field_name": "x", "value": True}}})
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

#: What an author may set under ``json_schema_extra={"ui": {...}}``.
UI_KEYS = ("label", "type", "tooltip", "initial_value", "depends_on", "max_count", "disabled", "options")


def ui_metadata(config: type[pydantic.BaseModel]) -> list[dict[str, Any]]:
    """One form element per field of ``config``, in declaration order."""
    return [_element(name, info) for name, info in config.model_fields.items()]


def _element(name: str, info: FieldInfo) -> dict[str, Any]:
    kind, options, max_count = _kind(info.annotation)
    default = info.get_default(call_default_factory=True) if info.default is not PydanticUndefined or \
        info.default_factory is not None else None
    element: dict[str, Any] = {
        "name": name, "label": info.title or name.replace("_", " ").capitalize(), "type": kind,
        "required": info.is_required(), "tooltip": info.description, "initial_value": _plain(default),
        "depends_on": None, "max_count": max_count, "disabled": None, "options": options,
    }
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, Mapping) else {}
    overrides = extra.get("ui", {})
    if isinstance(overrides, Mapping):
        element.update({key: overrides[key] for key in UI_KEYS if key in overrides})
    return element


def _kind(annotation: Any) -> tuple[str, list[Any] | None, int | None]:
    """The element type of an annotation, its options (selects) and its max count (1 for a single value)."""
    annotation = _without_none(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "select", list(typing.get_args(annotation)), 1
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "select", [member.value for member in annotation], 1
    if origin in (list, set, frozenset, tuple):
        args = typing.get_args(annotation)
        _inner, options, _ = _kind(args[0]) if args else ("string", None, None)
        return ("select" if options else "list"), options, None
    if annotation is bool:
        return "checkbox", None, 1
    if annotation is int:
        return "integer", None, 1
    if annotation is float:
        return "number", None, 1
    return "string", None, 1


def _without_none(annotation: Any) -> Any:
    """``X | None`` as ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _plain(value: Any) -> Any:
    """A default as JSON data (sets become sorted lists, enums their values)."""
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value
