"""Form metadata derived from criterion config models, and what authors may refine."""

import enum
from typing import Literal

from pydantic import BaseModel, Field

from groups_consumer.plugins.ui_metadata import ui_metadata


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Config(BaseModel):
    minimum: int = Field(3, ge=1, description="number of visits")
    share: float | None = None
    strict: bool = False
    kind: Literal["video", "problem"] = "video"
    colour: Colour = Colour.RED
    ids: frozenset[int] = Field(default_factory=frozenset, title="Users")
    unit: str = Field(json_schema_extra={"ui": {"label": "Unit key", "tooltip": "from Studio", "disabled": True,
                                                "depends_on": {"field_name": "strict", "value": True},
                                                "ignored": "not a UI key"}})


def test_elements_are_derived_from_the_fields_and_refined_by_authors():
    elements = {e["name"]: e for e in ui_metadata(Config)}
    assert list(elements) == ["minimum", "share", "strict", "kind", "colour", "ids", "unit"]
    assert elements["minimum"] == {"name": "minimum", "label": "Minimum", "type": "integer", "required": False,
                                   "tooltip": "number of visits", "initial_value": 3, "depends_on": None,
                                   "max_count": 1, "disabled": None, "options": None}
    assert (elements["share"]["type"], elements["share"]["initial_value"]) == ("number", None)
    assert (elements["strict"]["type"], elements["strict"]["initial_value"]) == ("checkbox", False)
    assert (elements["kind"]["type"], elements["kind"]["options"]) == ("select", ["video", "problem"])
    assert (elements["colour"]["options"], elements["colour"]["initial_value"]) == (["red", "blue"], "red")
    assert (elements["ids"]["type"], elements["ids"]["label"], elements["ids"]["max_count"]) == ("list", "Users", None)
    assert elements["ids"]["initial_value"] == []
    unit = elements["unit"]
    assert unit["required"] and (unit["label"], unit["tooltip"], unit["disabled"]) == ("Unit key", "from Studio", True)
    assert unit["depends_on"] == {"field_name": "strict", "value": True} and "ignored" not in unit
