"""``last_login``: days since the user last logged in."""

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from groups_consumer.facts.events import LOGIN, REGISTRATION
from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.plugins.criterion import CriterionType
from groups_consumer.shared import CriterionScope, Selection


class LastLoginConfig(BaseModel):
    """Config of ``last_login``."""

    model_config = ConfigDict(extra="forbid")
    days: int = Field(ge=0, le=36_500, description="number of days (at most 100 years)")


class LastLogin(CriterionType[LastLoginConfig, LearnerFacts, LearnerSnapshot]):
    """``>`` N: last seen more than N days ago; ``<=`` N: within the last N days.

    A user who never logged in counts from registration; a user with neither is never matched. The answer
    changes with time alone, exactly N days after the user was last seen: ``flips`` names those users.
    """

    name = "last_login"
    description = "Days since the last login (registration if the user never logged in)"
    Config = LastLoginConfig
    operators = (">", "<=")
    events = frozenset({LOGIN, REGISTRATION})
    refresh = timedelta(days=1)

    def __init__(self, operator: str, config: LastLoginConfig, scope: CriterionScope) -> None:
        super().__init__(operator, config, scope)
        self.period = timedelta(days=config.days)  # made once: ``test`` runs for thousands of users per batch

    def select(self, facts: LearnerFacts, now: datetime) -> Selection:
        cutoff = now - self.period
        return facts.last_seen(before=cutoff) if self.operator == ">" else facts.last_seen(since=cutoff)

    def flips(self, facts: LearnerFacts, after: datetime, upto: datetime) -> Selection:
        # Both operators compare last_seen with now - N days: the answer changes when that cutoff passes
        # the user's last_seen, i.e. for users last seen in [after - N days, upto - N days).
        return facts.last_seen(since=after - self.period, before=upto - self.period)

    def test(self, learner: LearnerSnapshot, now: datetime) -> bool:
        seen, cutoff = learner.last_seen, now - self.period
        return seen is not None and (seen < cutoff if self.operator == ">" else seen >= cutoff)

    def observed(self, learner: LearnerSnapshot, now: datetime) -> str:
        seen = learner.last_seen
        return f"last seen {seen.isoformat()} ({(now - seen).days} days ago)" if seen else "never seen"
