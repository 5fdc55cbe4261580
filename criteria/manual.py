"""``manual``: an explicit list of users."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.plugins.criterion import CriterionType
from groups_consumer.shared import Ids, Selection


class ManualConfig(BaseModel):
    """Config of ``manual``."""

    model_config = ConfigDict(extra="forbid")
    user_ids: frozenset[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(description="LMS user ids")


class Manual(CriterionType[ManualConfig, LearnerFacts, LearnerSnapshot]):
    """Users listed by id (only users known to the platform and in the group's scope become members).

    The list changes only when an operator edits it (``groups-consumer manual``); events and syncs still
    re-evaluate the scope.
    """

    name = "manual"
    description = "An explicit list of users"
    Config = ManualConfig
    operators = ("in",)

    def select(self, facts: LearnerFacts, now: datetime) -> Selection:
        return Ids(frozenset(self.config.user_ids))

    def test(self, learner: LearnerSnapshot, now: datetime) -> bool:
        return learner.user_id in self.config.user_ids

    def observed(self, learner: LearnerSnapshot, now: datetime) -> str:
        return "listed" if learner.user_id in self.config.user_ids else "not listed"
