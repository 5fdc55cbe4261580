"""The backends evaluation reads, built once and passed in (never looked up from inside an evaluation).

A catalog of groups is compiled against one ``Readers``: the backend client of every name criteria may read
(fact sources and plain backends), and the learner facts that answer every group's scope. Set-based
evaluation (syncs, previews, time passes) asks them for selections; per-user evaluation asks them for
snapshots, once per batch of users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.plugins import registry
from groups_consumer.plugins.backend import BackendClient
from groups_consumer.plugins.registry import PluginUnavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Readers:
    """The backend clients of one process, by name."""

    backends: Mapping[str, BackendClient[Any]]
    failures: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def installed(cls) -> Readers:
        """The available backends of this process (one instance per name, shared with the fact sources); one
        whose constructor raises is left out with the error (only the groups reading it fail)."""
        backends, failures = {}, {}
        for name, plugin in registry.backend_classes().plugins.items():
            try:
                backends[name] = registry.backend(name)
            except Exception as exc:  # a plugin's constructor may raise anything
                failures[name] = f"{plugin.target} (package {plugin.source}) failed to start: {exc!r}"
                log.error("backend_failed", name=name, reason=failures[name])
        return cls(backends, failures)

    def get(self, name: str) -> BackendClient[Any]:
        """The backend named ``name``; PluginUnavailable says why there is none."""
        if name in self.backends:
            return self.backends[name]
        raise PluginUnavailable(self.failures.get(name) or registry.backend_classes().unavailable_reason(name))

    @property
    def scope(self) -> LearnerFacts:
        """The backend that answers the scope of every group (``population``): the learner facts."""
        backend = self.get(LearnerFacts.name)
        if not isinstance(backend, LearnerFacts):
            raise TypeError(f"the {LearnerFacts.name!r} backend must be a LearnerFacts, not {type(backend).__name__}")
        return backend
