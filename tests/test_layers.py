"""The layers of the code base: what each package may import from the others.

From the bottom: the shared types and models; the plugin interfaces and the fact sources; the engine
(evaluation and membership writes); the pipeline, publishing and scheduling that drive it; the web API,
management commands and CLI on top. A lower layer never imports a higher one, so each can be read (and
tested) without the ones above it; the built-in criteria use only what a plugin author has.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UPPER_LAYERS = ("engine", "pipeline", "publishing", "scheduling", "web", "management", "api", "cli", "status")
#: Package (or module) -> the groups_consumer packages it must not import.
FORBIDDEN = {
    "groups_consumer/shared.py": ("facts", "plugins", *UPPER_LAYERS),
    "groups_consumer/models": ("facts", "plugins", "shared", *UPPER_LAYERS),
    "groups_consumer/plugins": ("facts", *UPPER_LAYERS),
    "groups_consumer/facts": UPPER_LAYERS,
    "groups_consumer/engine": ("pipeline", "scheduling", "web", "management", "api", "cli", "status"),
    "criteria": UPPER_LAYERS,
}


def imported_packages(path: Path) -> set[str]:
    """The groups_consumer packages (first component below it) a module imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "groups_consumer" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] == "groups_consumer" and isinstance(node, ast.ImportFrom):
                found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    base = ROOT / layer
    modules = [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))
    assert modules, f"{layer} has no modules"
    breaches = {str(module.relative_to(ROOT)): sorted(imported_packages(module) & set(FORBIDDEN[layer]))
                for module in modules}
    assert {module: found for module, found in breaches.items() if found} == {}
