"""Limits on group definitions, which arrive from the network and from files: untrusted input.

A definition beyond a limit is refused with a DefinitionError naming the field and the limit, e.g.
``rule.any: 5000 criteria; the limit is 200 (GROUPS_CONSUMER_DEFINITION_LIMITS['max_leaves'])``. The checks
run before anything recursive or large is built from the definition: ``check_text`` reads JSON text without
decoding it (so the decoder never recurses past the limits), ``check_document`` walks a decoded document with
an explicit stack and looks at list lengths before their items, and the size is measured only once the
structure is known to be bounded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from groups_consumer.errors import DefinitionError

SETTING = "GROUPS_CONSUMER_DEFINITION_LIMITS"
#: The highest ``max_depth`` a deployment may configure: evaluating a rule recurses a few frames per level
#: (parsing, SQL compilation, per-user matching), and Python stops at 1000 frames.
DEPTH_CEILING = 64
_OPERATORS = ("all", "any", "not")
# JSON strings (escapes included) and brackets: enough to follow the nesting of JSON text without decoding it.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_NESTING = re.compile(rf"{_STRING}|[\[\]{{}}]", re.DOTALL)
_PATH_TOKENS = re.compile(rf"{_STRING}|[\[\]{{}},:]", re.DOTALL)
_BLANKS = " \t\n\r"


@dataclass(frozen=True)
class DefinitionLimits:
    """The limits (defaults here; ``GROUPS_CONSUMER_DEFINITION_LIMITS`` overrides any of them).

    ``max_depth``: how deeply rules nest (a criterion alone is 1, each all / any / not around it adds 1); the
    objects and lists of a criterion's config (or of any other field) nest no deeper either.
    ``max_leaves``: criteria in one rule. ``max_list_items``: items of any one list (or entries of any one
    object) of a document, such as a manual list's ``user_ids``. ``max_document_bytes``: one document
    serialized as compact JSON (UTF-8). ``max_documents``: documents in one file or request.
    """

    max_depth: int = 32
    max_leaves: int = 200
    max_list_items: int = 100_000
    max_document_bytes: int = 2_000_000
    max_documents: int = 1_000

    @classmethod
    def configured(cls) -> DefinitionLimits:
        """The limits with the Django setting's overrides; ImproperlyConfigured for an unusable value."""
        overrides = getattr(settings, SETTING, None) or {}
        known = {f.name for f in fields(cls)}
        for name, value in overrides.items():
            if name not in known:
                raise ImproperlyConfigured(f"{SETTING}[{name!r}]: unknown limit; known: {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImproperlyConfigured(f"{SETTING}[{name!r}]: must be a positive integer, not {value!r}")
        limits = cls(**overrides)
        if limits.max_depth > DEPTH_CEILING:
            raise ImproperlyConfigured(f"{SETTING}['max_depth']: at most {DEPTH_CEILING} (deeper rules would "
                                       "exhaust Python's recursion limit when evaluated)")
        return limits

    @property
    def json_depth(self) -> int:
        """How deeply the JSON text of a file within the limits can nest: a list of documents, a document,
        two levels per rule node (all / any: an object and its list), then a config's own ``max_depth``."""
        return 3 * self.max_depth + 2


def exceeded(field: str, found: str, limits: DefinitionLimits, limit: str) -> DefinitionError:
    """The error for a definition beyond a limit, naming the field, what was found and the setting."""
    return DefinitionError(field, f"{found}; the limit is {getattr(limits, limit)} ({SETTING}[{limit!r}])")


def check_text(text: str, limits: DefinitionLimits | None = None) -> None:
    """Refuse JSON text (a file, a request body) nested deeper than a definition within the limits can be, or
    with too many documents or a document too large, without decoding it.

    A document's size is estimated from its text less blanks and escapes (a lower bound of its compact size):
    the exact size is checked on the decoded document, by ``check_document``.
    """
    limits = limits or DefinitionLimits.configured()
    depth, in_list, start, documents = 0, False, 0, 0
    for match in _NESTING.finditer(text):
        token = match.group()
        if token in ("{", "["):
            depth += 1
            if depth > limits.json_depth:
                raise exceeded(_path_at(text, match.start()) or "(document)",
                               f"nested more than {limits.json_depth} levels of JSON deep", limits, "max_depth")
            if depth == 1:
                in_list = token == "["
            elif depth == 2 and in_list:
                start, documents = match.start(), documents + 1
                if documents > limits.max_documents:
                    raise exceeded("(list)", f"more than {limits.max_documents} documents", limits, "max_documents")
        elif token in ("}", "]"):
            depth -= 1
            if depth == 1 and in_list:
                _check_span(text, start, match.end(), f"[{documents - 1}].(document)", limits)
    if not in_list:
        _check_span(text, 0, len(text), "(document)", limits)


def _check_span(text: str, start: int, end: int, field: str, limits: DefinitionLimits) -> None:
    """Refuse a document whose text, less blanks and escapes, is already larger than the limit."""
    shrinkable = sum(text.count(blank, start, end) for blank in _BLANKS) + 5 * text.count("\\", start, end)
    if end - start - shrinkable > limits.max_document_bytes:
        raise exceeded(field, f"more than {limits.max_document_bytes} bytes of JSON", limits, "max_document_bytes")


def _path_at(text: str, end: int) -> str:
    """The path (``[1].rule.not``) of the value that starts at ``end`` in JSON text, read token by token."""
    frames: list[list[Any]] = []  # ["{", key, expecting a key] or ["[", index]
    for match in _PATH_TOKENS.finditer(text, 0, end):
        token = match.group()
        top = frames[-1] if frames else None
        if token == "{":
            frames.append(["{", None, True])
        elif token == "[":
            frames.append(["[", 0])
        elif token in ("}", "]"):
            if frames:
                frames.pop()
        elif top is None:
            continue
        elif token == ",":
            if top[0] == "[":
                top[1] += 1
            else:
                top[2] = True
        elif token == ":":
            top[2] = False
        elif top[0] == "{" and top[2]:
            top[1] = json.loads(token)
    path = "".join(f"[{frame[1]}]" if frame[0] == "[" else f".{frame[1]}" for frame in frames
                   if frame[0] == "[" or frame[1] is not None)
    return path.removeprefix(".")


def check_documents(data: list[Any], limits: DefinitionLimits | None = None) -> None:
    """Refuse a list of more documents than ``max_documents``."""
    limits = limits or DefinitionLimits.configured()
    if len(data) > limits.max_documents:
        raise exceeded("(list)", f"{len(data)} documents", limits, "max_documents")


def check_document(doc: dict[str, Any], limits: DefinitionLimits | None = None) -> None:
    """Refuse a decoded group document beyond the limits: rule depth and criteria, list lengths, size."""
    limits = limits or DefinitionLimits.configured()
    walk = _Walk(limits)
    for key, value in doc.items():
        walk.run(value, str(key), rule=key == "rule")
    walk.add(2 + len(doc) + sum(len(str(key)) + 2 for key in doc))
    try:
        size = len(json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    except ValueError as exc:  # a number too long to write, or a circular structure
        raise DefinitionError("(document)", f"cannot be written as JSON: {exc}") from exc
    if size > limits.max_document_bytes:
        raise exceeded("(document)", f"{size} bytes of JSON", limits, "max_document_bytes")


def check_rule(rule: Any, limits: DefinitionLimits | None = None) -> None:
    """Refuse a rule tree beyond the structural limits (depth, criteria, list lengths): a stored rule is checked
    again before it is compiled, so no rule saved before the limits (or beyond lowered ones) is evaluated."""
    _Walk(limits or DefinitionLimits.configured(), count_bytes=False).run(rule, "rule", rule=True)


class _Walk:
    """One pass over decoded JSON with an explicit stack: no recursion, whatever the nesting.

    It counts criteria and a lower bound of the compact JSON size as it goes (refusing as soon as that bound
    passes the limit), and checks a list's length before looking at its items.
    """

    def __init__(self, limits: DefinitionLimits, count_bytes: bool = True):
        self.limits = limits
        self.count_bytes = count_bytes
        self.leaves = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        """Count bytes of the document; refuse once there are too many."""
        if self.count_bytes:
            self.bytes += size
            if self.bytes > self.limits.max_document_bytes:
                raise exceeded("(document)", f"more than {self.limits.max_document_bytes} bytes of JSON",
                               self.limits, "max_document_bytes")

    def run(self, root: Any, root_path: str, *, rule: bool) -> None:
        """Check ``root`` found at ``root_path``: a rule tree, or plain data (whose containers count depth)."""
        # (value, path, rule depth (0: plain data), data depth of the value's containers)
        stack: list[tuple[Any, str, int, int]] = [(root, root_path, 1 if rule else 0, 1)]
        while stack:
            value, path, rule_depth, data_depth = stack.pop()
            if rule_depth and isinstance(value, dict):
                stack += self._rule_node(value, path, rule_depth, root_path)
            elif isinstance(value, dict | list | tuple):
                stack += self._container(value, path, data_depth)
            else:
                self._scalar(value, path)

    def _rule_node(self, node: dict[str, Any], path: str, depth: int,
                   root_path: str) -> list[tuple[Any, str, int, int]]:
        if depth > self.limits.max_depth:
            raise exceeded(path, f"rules nested more than {self.limits.max_depth} deep", self.limits, "max_depth")
        self.add(1 + len(node) + sum(len(str(key)) + 3 for key in node))
        children: list[tuple[Any, str, int, int]] = []
        if not node.keys() & set(_OPERATORS):
            self.leaves += 1
            if self.leaves > self.limits.max_leaves:
                raise exceeded(root_path, f"more than {self.limits.max_leaves} criteria", self.limits, "max_leaves")
            return [(value, f"{path}.{key}", 0, 1) for key, value in node.items()]
        for key, value in node.items():
            if key == "not":
                children.append((value, f"{path}.not", depth + 1, 1))
            elif key in _OPERATORS and isinstance(value, list | tuple):
                if len(value) > self.limits.max_leaves:
                    raise exceeded(f"{path}.{key}", f"{len(value)} criteria", self.limits, "max_leaves")
                self.add(1 + len(value))
                children += [(child, f"{path}.{key}[{i}]", depth + 1, 1) for i, child in enumerate(value)]
            else:
                children.append((value, f"{path}.{key}", 0, 1))
        return children

    def _container(self, value: dict[str, Any] | list[Any] | tuple[Any, ...], path: str,
                   depth: int) -> list[tuple[Any, str, int, int]]:
        if depth > self.limits.max_depth:
            raise exceeded(path, f"objects and lists nested more than {self.limits.max_depth} deep", self.limits,
                           "max_depth")
        if len(value) > self.limits.max_list_items:
            found = f"{len(value)} {'entries' if isinstance(value, dict) else 'items'}"
            raise exceeded(path, found, self.limits, "max_list_items")
        self.add(1 + len(value))
        items = ((f"{path}.{key}", item) for key, item in value.items()) if isinstance(value, dict) else (
            (f"{path}[{i}]", item) for i, item in enumerate(value))
        children = []
        for item_path, item in items:
            if isinstance(item, dict | list | tuple):
                children.append((item, item_path, 0, depth + 1))
            else:
                self._scalar(item, item_path)
        if isinstance(value, dict):
            self.add(sum(len(str(key)) + 3 for key in value))
        return children

    def _scalar(self, value: Any, path: str) -> None:
        if not self.count_bytes:
            return
        if isinstance(value, str):
            self.add(len(value) + 2)
            return
        try:
            written = repr(value)
        except ValueError as exc:  # an integer of more digits than Python writes
            raise DefinitionError(path, f"cannot be written as JSON: {exc}") from exc
        self.add(len(written))
