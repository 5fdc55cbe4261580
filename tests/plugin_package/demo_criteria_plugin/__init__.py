"""A third-party criterion plugin, as a criterion author would write one."""

from pydantic import BaseModel, Field

from criteria.country import Country
from groups_consumer.plugins.criterion import CriterionType
from groups_consumer.shared import Ids


class PrefixConfig(BaseModel):
    prefix: str = Field(min_length=1)


class UsernamePrefix(CriterionType):
    """Users whose username starts with a prefix."""

    name = "username_prefix"
    Config = PrefixConfig
    operators = ("starts_with",)

    def select(self, facts, now):
        users = facts.snapshots(range(10_000))
        return Ids(frozenset(u for u, learner in users.items() if self.test(learner, now)))

    def test(self, learner, now):
        return learner.username.startswith(self.config.prefix)


class ShadowCountry(Country):
    """Registers a second 'country'."""
