"""``last_login``: days since the user last logged in."""

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from groups_consumer.event_types import LOGIN, REGISTRATION
from groups_consumer.plugins.criterion import CriterionType


class LastLoginConfig(BaseModel):
    """Config of ``last_login``."""

    model_config = ConfigDict(extra="forbid")
    days: int = Field(ge=0, description="number of days")


class LastLogin(CriterionType):
    """``>`` N: last seen more than N days ago; ``<=`` N: within the last N days.

    A user who never logged in counts from registration; a user with neither is never matched.
    """

    name = "last_login"
    description = "Days since the last login (registration if the user never logged in)"
    Config = LastLoginConfig
    operators = (">", "<=")
    events = frozenset({LOGIN, REGISTRATION})

    def select(self, facts, now: datetime):
        cutoff = now - timedelta(days=self.config.days)
        return facts.last_seen(before=cutoff) if self.operator == ">" else facts.last_seen(since=cutoff)

    def test(self, learner, now: datetime) -> bool:
        seen, cutoff = learner.last_seen, now - timedelta(days=self.config.days)
        return seen is not None and (seen < cutoff if self.operator == ">" else seen >= cutoff)

    def observed(self, learner, now: datetime) -> str:
        seen = learner.last_seen
        return f"last seen {seen.isoformat()} ({(now - seen).days} days ago)" if seen else "never seen"
