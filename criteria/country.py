"""``country``: the country of the user's profile."""

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from groups_consumer.facts.events import PROFILE_CHANGED
from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.plugins.criterion import CriterionType
from groups_consumer.shared import Selection

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$"), AfterValidator(str.upper)]


class CountryConfig(BaseModel):
    """Config of ``country``."""

    model_config = ConfigDict(extra="forbid")
    countries: list[CountryCode] = Field(min_length=1, description="ISO 3166-1 alpha-2 codes")


class Country(CriterionType[CountryConfig, LearnerFacts, LearnerSnapshot]):
    """Profile country ``in`` / ``not_in`` the list; an unknown country is in no list."""

    name = "country"
    description = "Country of the user's profile"
    Config = CountryConfig
    operators = ("in", "not_in")
    events = frozenset({PROFILE_CHANGED})

    def select(self, facts: LearnerFacts, now: datetime) -> Selection:
        return facts.country(self.config.countries, inside=self.operator == "in")

    def test(self, learner: LearnerSnapshot, now: datetime) -> bool:
        return (learner.country in self.config.countries) == (self.operator == "in")

    def observed(self, learner: LearnerSnapshot, now: datetime) -> str:
        return f"country {learner.country or 'unknown'}"
