"""Plugin discovery: criterion types, fact sources and backend clients from stevedore entry points.

Load everything in a namespace, detect duplicate names, report, serve by name. A broken or ambiguous plugin
is reported and left out; only the groups that use it stop working.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeAlias, TypeVar, cast

import pydantic
import structlog
from django.conf import settings
from django.db.models import Model
from django.utils.module_loading import import_string
from stevedore import ExtensionManager

from groups_consumer.models import UserFact
from groups_consumer.plugins.backend import BackendClient
from groups_consumer.plugins.criterion import CriterionType
from groups_consumer.plugins.events import EventSpec
from groups_consumer.plugins.source import FactSource

CRITERIA_NAMESPACE = "groups_consumer.criteria"
BACKENDS_NAMESPACE = "groups_consumer.backends"
FACT_SOURCES_NAMESPACE = "groups_consumer.fact_sources"
log = structlog.get_logger(__name__)

#: What a registry serves: for criteria, classes of any config, backend and snapshot type (the engine mixes them).
PluginT = TypeVar("PluginT")
CriterionClass: TypeAlias = type[CriterionType[Any, Any, Any]]
BackendClass: TypeAlias = type[BackendClient[Any]]
FactSourceClass: TypeAlias = type[FactSource[Any]]
#: ``check(name, obj)`` raises TypeError or ValueError to refuse an object that is not a valid plugin.
Check: TypeAlias = Callable[[str, object], None]


def _accept_any(name: str, obj: object) -> None:
    """The check that refuses nothing."""


class PluginUnavailable(LookupError):
    """A plugin name cannot be served; the message says why (missing, ambiguous, failed to load)."""


@dataclass(frozen=True)
class Plugin(Generic[PluginT]):
    """One loaded entry point."""

    name: str
    obj: PluginT
    target: str
    source: str


@dataclass
class PluginRegistry(Generic[PluginT]):
    """The plugins of one namespace, by name, with what could not be loaded and why."""

    namespace: str
    plugins: dict[str, Plugin[PluginT]] = field(default_factory=dict)
    conflicts: dict[str, tuple[Plugin[PluginT], ...]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    #: Plugins that loaded but were left out afterwards (``leave_out``), with why, in the order left out.
    left_out: dict[str, tuple[Plugin[PluginT], str]] = field(default_factory=dict)

    @classmethod
    def discover(cls, namespace: str, check: Check = _accept_any) -> Self:
        """Load the namespace. ``check(name, obj)`` raises to refuse an object that is not a valid plugin: it is
        what makes the loaded objects ``PluginT``."""
        registry = cls(namespace)

        def on_failure(_manager: ExtensionManager[Any], entry_point: importlib.metadata.EntryPoint,
                       exc: BaseException) -> None:
            registry._fail(entry_point.name, f"{entry_point.value} failed to load: {exc!r}")

        found: dict[str, list[Plugin[PluginT]]] = {}
        distributions = _distributions_of_modules()
        manager: ExtensionManager[Any] = ExtensionManager(namespace, on_load_failure_callback=on_failure)
        for ext in manager:
            top_module = ext.entry_point.value.split(":")[0].split(".")[0]
            source = ", ".join(sorted(set(distributions.get(top_module, ["unknown"]))))
            # Not checked yet: ``add`` runs ``check`` before serving it.
            plugin = Plugin(ext.name, cast(PluginT, ext.plugin), ext.entry_point.value, source)
            found.setdefault(ext.name, []).append(plugin)
        for candidates in found.values():
            registry.add(*candidates, check=check)
        return registry

    def add(self, *candidates: Plugin[PluginT], check: Check = _accept_any) -> None:
        """Register the candidates for one name; several candidates make the name ambiguous."""
        name = candidates[0].name
        if len(candidates) > 1:
            self.conflicts[name] = candidates
            sources = " and ".join(f"{c.target} (package {c.source})" for c in candidates)
            log.error("plugin_name_conflict", namespace=self.namespace, name=name, sources=sources)
            return
        try:
            check(name, candidates[0].obj)
        except Exception as exc:  # a plugin's own code (a property, a metaclass) may raise anything
            self._fail(name, f"{candidates[0].target} (package {candidates[0].source}): {exc}")
            return
        self.plugins[name] = candidates[0]

    def get(self, name: str) -> PluginT:
        """The plugin object registered under ``name``; PluginUnavailable says why there is none."""
        if name in self.plugins:
            return self.plugins[name].obj
        raise PluginUnavailable(self.unavailable_reason(name))

    def unavailable_reason(self, name: str) -> str:
        """Why ``name`` cannot be served (meaningful only when it cannot)."""
        if name in self.conflicts:
            sources = " and ".join(f"{c.target} (package {c.source})" for c in self.conflicts[name])
            return f"{name!r} is registered twice in {self.namespace}: {sources}"
        if name in self.failures:
            return f"{name!r} could not be loaded: {self.failures[name]}"
        return f"{name!r} is not installed (no entry point {name!r} in {self.namespace})"

    def leave_out(self, name: str, reason: str) -> None:
        """Stop serving the registered plugin ``name``: it becomes a failure, with ``reason``."""
        plugin = self.plugins.pop(name)
        self.left_out[name] = (plugin, reason)
        self._fail(name, f"{plugin.target} (package {plugin.source}): {reason}")

    def _fail(self, name: str, reason: str) -> None:
        self.failures[name] = reason
        log.error("plugin_load_failed", namespace=self.namespace, name=name, reason=reason)


#: The registry of criterion types (what rule parsing looks types up in).
CriterionRegistry: TypeAlias = PluginRegistry[CriterionClass]


def _check_criterion_type(name: str, obj: object) -> None:
    """A criterion type the engine can use: what it declares, complete and well-typed; refused otherwise (its
    groups are then broken with the reason, the others work)."""
    if not (isinstance(obj, type) and issubclass(obj, CriterionType)):
        raise TypeError("is not a CriterionType subclass")
    missing = [attribute for attribute in ("name", "Config", "operators") if not hasattr(obj, attribute)]
    if missing:
        raise TypeError(f"misses the class attribute{'s' * (len(missing) > 1)} {', '.join(missing)}")
    if not (isinstance(obj.Config, type) and issubclass(obj.Config, pydantic.BaseModel)):
        raise TypeError("Config is not a pydantic model class")
    if not (isinstance(obj.operators, tuple) and obj.operators and all(isinstance(o, str) for o in obj.operators)):
        raise TypeError("operators is not a non-empty tuple of strings")
    if not (isinstance(obj.events, frozenset | set) and all(isinstance(e, str) for e in obj.events)):
        raise TypeError("events is not a set of event types (strings)")
    if inspect.isabstract(obj):
        raise TypeError(f"does not implement {', '.join(sorted(obj.__abstractmethods__))}")
    if obj.name != name:
        raise ValueError(f"declares name {obj.name!r} but is registered as {name!r}")


def _check_backend(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, BackendClient)):
        raise TypeError("is not a BackendClient subclass")
    if inspect.isabstract(obj):
        raise TypeError(f"does not implement {', '.join(sorted(obj.__abstractmethods__))}")


def _check_fact_source(name: str, obj: object) -> None:
    """A fact source the consumer can use: its events have schemas, its facts live in models of an installed
    Django app; refused otherwise (the criteria reading it then break their groups, the rest works)."""
    if not (isinstance(obj, type) and issubclass(obj, FactSource)):
        raise TypeError("is not a FactSource subclass")
    _check_backend(name, obj)
    if getattr(obj, "name", None) != name:
        raise ValueError(f"declares name {getattr(obj, 'name', None)!r} but is registered as {name!r}")
    events = getattr(obj, "events", None)
    if not (isinstance(events, tuple) and events and all(isinstance(spec, EventSpec) for spec in events)):
        raise TypeError("events is not a non-empty tuple of EventSpec")
    for spec in events:
        try:
            spec.schema  # noqa: B018 (derived once, here, so that a bad signal is reported at start-up)
        except Exception as exc:  # openedx-events raises plain Exception for data it cannot express
            raise TypeError(f"event {spec.event_type}: no Avro schema can be derived from its signal ({exc})") from exc
    if unknown := set(getattr(obj, "user_columns", ())) - {field.attname for field in UserFact._meta.fields}:
        raise TypeError(f"user_columns names no column of UserFact: {', '.join(sorted(unknown))}")
    models = getattr(obj, "models", None)
    if not (isinstance(models, tuple) and models and all(isinstance(m, type) and issubclass(m, Model)
                                                         for m in models)):
        raise TypeError("models is not a non-empty tuple of Django model classes")


@functools.cache
def _distributions_of_modules() -> Mapping[str, list[str]]:
    """The installed distributions providing each top-level module, read once per process (a scan of every
    installed package's metadata: about 0.3 s, which every command and consumer paid once per namespace)."""
    return importlib.metadata.packages_distributions()


@functools.cache
def criterion_types() -> CriterionRegistry:
    """The criterion types of this process (loaded once)."""
    return CriterionRegistry.discover(CRITERIA_NAMESPACE, _check_criterion_type)


@functools.cache
def fact_source_classes() -> PluginRegistry[FactSourceClass]:
    """The fact source classes of this process (loaded once)."""
    return PluginRegistry[FactSourceClass].discover(FACT_SOURCES_NAMESPACE, _check_fact_source)


@functools.cache
def backend_classes() -> PluginRegistry[BackendClass]:
    """What criteria may read, by name: fact sources and backend clients (a name in both is ambiguous), then
    ``settings.GROUPS_CONSUMER_BACKENDS``, which overrides either."""
    registry = PluginRegistry[BackendClass].discover(BACKENDS_NAMESPACE, _check_backend)
    registry.namespace = f"{FACT_SOURCES_NAMESPACE} or {BACKENDS_NAMESPACE}"  # where a missing name may come from
    # A fact source class is a backend class: the registries only differ in what their check verified.
    sources = cast(PluginRegistry[BackendClass], fact_source_classes())
    for name, plugin in sources.plugins.items():
        if name in registry.plugins:
            registry.add(registry.plugins.pop(name), plugin)
        elif name not in registry.conflicts:
            registry.plugins[name] = plugin
    for name in sources.failures.keys() - registry.plugins.keys():
        registry.failures[name] = sources.failures[name]
    for name, candidates in sources.conflicts.items():
        registry.conflicts[name] = candidates + registry.conflicts.get(name, ())
    for name, dotted in getattr(settings, "GROUPS_CONSUMER_BACKENDS", {}).items():
        registry.conflicts.pop(name, None)
        registry.plugins.pop(name, None)
        registry.add(Plugin(name, import_string(dotted), dotted, "settings.GROUPS_CONSUMER_BACKENDS"),
                     check=_check_backend)
    return registry


@functools.cache
def backend(name: str) -> BackendClient[Any]:
    """The backend client instance for ``name`` (one per process)."""
    return backend_classes().get(name)()


def criterion_problem(name: str, types: CriterionRegistry | None = None) -> str | None:
    """Why the criterion type ``name`` of ``types`` (default: the installed ones) cannot work in this process, or
    None: the backend it reads is unavailable, or it listens to event types no available fact source consumes
    (it would never update)."""
    plugin = (criterion_types() if types is None else types).plugins[name]
    criterion, where = plugin.obj, f"{plugin.target} (package {plugin.source})"
    consumed = {spec.event_type for spec in event_specs()}  # leaves out the sources that cannot start
    if criterion.backend not in backend_classes().plugins:
        return f"{where} reads {criterion.backend!r}, which is unavailable: " \
               f"{backend_classes().unavailable_reason(criterion.backend)}"
    try:
        backend(criterion.backend)
    except Exception as exc:  # a plugin's constructor may raise anything
        return f"{where} reads {criterion.backend!r}, which failed to start: {exc!r}"
    if unheard := sorted(criterion.events - consumed):
        why = unavailable_events()
        return f"{where} listens to {', '.join(unheard)}, which no available fact source consumes" + "".join(
            f" ({why[event_type]})" for event_type in unheard if event_type in why)
    return None


@functools.cache
def fact_sources() -> list[FactSource[Any]]:
    """The available fact sources, one instance each: the one ``backend`` serves, unless the name is served by
    another backend (``settings.GROUPS_CONSUMER_BACKENDS``): then criteria read that one, and events still
    update the source's tables."""
    found: list[FactSource[Any]] = []
    schemas: dict[str, tuple[str, dict[str, Any]]] = {}  # event type -> the first source declaring it, its schema
    for name, plugin in sorted(fact_source_classes().plugins.items()):
        try:
            served = backend(name) if name in backend_classes().plugins else None
            source = served if isinstance(served, plugin.obj) else plugin.obj()
        except Exception as exc:  # a plugin's constructor may raise anything
            _leave_out(name, f"failed to start: {exc!r}")
            continue
        clash = next(((spec.event_type, schemas[spec.event_type][0]) for spec in source.events
                      if spec.event_type in schemas and schemas[spec.event_type][1] != spec.schema), None)
        if clash:
            _leave_out(name, f"declares {clash[0]} with another schema than fact source {clash[1]!r}")
            continue
        schemas.update((spec.event_type, (name, spec.schema)) for spec in source.events)
        found.append(source)
    return found


def reads_through(source: FactSource[Any]) -> bool:
    """True when criteria read ``source`` itself (so the snapshots its ``apply`` returns are theirs)."""
    return source.name in backend_classes().plugins and backend(source.name) is source


def event_specs() -> list[EventSpec]:
    """What the available fact sources consume: every source's specs."""
    return [spec for source in fact_sources() for spec in source.events]


def disable_fact_source(name: str, reason: str) -> None:
    """Leave out an installed fact source for the rest of the process (a start-up check failed): the criteria
    reading it break their groups with ``reason``, its events are dead-lettered as ``source_unavailable``."""
    _leave_out(name, reason)
    fact_sources.cache_clear()


def _leave_out(name: str, reason: str) -> None:
    """Move a registered fact source to the failures (see ``disable_fact_source``)."""
    fact_source_classes().leave_out(name, reason)
    for cached in (backend_classes, backend):
        cached.cache_clear()


def unavailable_events() -> dict[str, str]:
    """The event types of the fact sources left out at start-up, with why (their messages are dead-lettered
    with it); an event type of several, with the first one's reason."""
    found: dict[str, str] = {}
    for name, (plugin, reason) in fact_source_classes().left_out.items():
        for spec in plugin.obj.events:
            found.setdefault(spec.event_type, f"fact source {name!r} is unavailable: {reason}")
    return found


def reset() -> None:
    """Forget loaded plugins (tests, or after installing a plugin in a running process)."""
    for cached in (_distributions_of_modules, criterion_types, fact_source_classes, backend_classes, backend,
                   fact_sources):
        cached.cache_clear()
