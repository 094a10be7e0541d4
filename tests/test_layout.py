"""Package layering: the kernels import light, no module reaches back up to the package root or
into a layer listed below its own, no imports go round in a cycle, and no file grows past 400 lines."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sparsevit_sdk

PACKAGE = Path(sparsevit_sdk.__file__).parent
MAX_LINES = 400
DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def module_map() -> tuple[tuple[str, ...], ...]:
    """The module map of docs/design.md, top to bottom, one layer a table row: a module imports only modules of
    its own layer or of one above.  The list the docs render is the list checked here, so they cannot disagree."""
    text = DESIGN.read_text()
    section = text[text.index("## Module map"):]
    section = section[:section.index("\n## ", 1)]
    rows = re.findall(r"^\|[^|]*\| (`[^|]*`) \|", section, re.M)
    return tuple(tuple(name.rstrip("/").removesuffix(".py") for name in re.findall(r"`([^`]+)`", row))
                 for row in rows)


LAYERS = module_map()


def test_importing_the_kernels_loads_no_predictor_search_or_plotting_stack():
    code = ("import sys, sparsevit_sdk.sparse; "
            "print(' '.join(m for m in ('xgboost', 'deap', 'matplotlib', 'pandas', 'sklearn') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_no_module_imports_the_package_root():
    """The root only re-exports; a module importing it depends on everything through the back door."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for modules at the root
        dots = "." * (depth + 1)  # the relative spelling of the root, seen from this module
        pattern = rf"^\s*(from\s+sparsevit_sdk\s+import|import\s+sparsevit_sdk\s*$|from\s+{re.escape(dots)}\s+import)"
        if path != PACKAGE / "__init__.py" and re.search(pattern, path.read_text(), re.M):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_public_names_resolve_lazily_and_completely():
    for name in sparsevit_sdk.__all__:
        assert getattr(sparsevit_sdk, name) is not None
    assert set(sparsevit_sdk.__all__) <= set(dir(sparsevit_sdk))


def test_the_dataset_package_sits_below_the_profiler_and_the_predictors():
    """Builder and readers meet in ``dataset``; it imports neither of them (nor torch)."""
    code = ("import sys, sparsevit_sdk.dataset; "
            "print(' '.join(m for m in sys.modules if m.split('.')[:2] in (['sparsevit_sdk', 'profiler'], "
            "['sparsevit_sdk', 'predictor'], ['sparsevit_sdk', 'search']) or m == 'torch'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


@pytest.mark.slow
def test_the_predictor_reads_profiles_without_the_profiler():
    """nn-Meter's split: the predictor meets the profiler only in the dataset package."""
    code = ("import sys, sparsevit_sdk.predictor; "
            "print(' '.join(m for m in sys.modules if m.startswith('sparsevit_sdk.profiler')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """The package modules each module imports, wherever the import stands: at the top, in a
    function body or under ``if TYPE_CHECKING:`` (a deferred import is still a dependency)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = (name if path.name == "__init__.py" else name.rpartition(".")[0]).split(".")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names}
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def _layer(module: str) -> int:
    inner = module.removeprefix(f"{PACKAGE.name}.")
    for index, layer in enumerate(LAYERS):
        if any(inner == top or inner.startswith(f"{top}.") for top in layer):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to the module map in docs/design.md")


def test_no_import_cycles():
    """A cycle, even through a function-local import, means two modules that cannot be read,
    tested or moved apart; its knowledge belongs in one of them, or in a layer above both."""
    graph = _imports()
    reach = {module: _reachable(graph, module) for module in graph}
    cycles = sorted({tuple(sorted(m for m in reach[start] if start in reach[m])) for start in graph
                     if start in reach[start]})
    assert cycles == []


def test_no_module_imports_a_layer_listed_below_its_own():
    graph = _imports()
    del graph[PACKAGE.name]  # the root re-exports every layer (test_no_module_imports_the_package_root)
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                    if _layer(target) > _layer(module))
    assert upward == []


def test_no_library_file_is_over_400_lines():
    """A file that long holds more than one idea: split it into modules named for what they do."""
    lines = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {path: n for path, n in lines.items() if n > MAX_LINES} == {}


def _public_packages() -> list[str]:
    return [PACKAGE.name] + sorted(f"{PACKAGE.name}.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py"))


def _home_package(module: str) -> str | None:
    """The subpackage (``sparsevit_sdk.search``) a module belongs to; None for a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[0] == PACKAGE.name else None


def test_each_public_name_has_one_home_package():
    """A name in two packages' ``__all__`` is two spellings of one thing; a package exports only what it
    defines.  The root re-exports headline names: each from its family's package (timm's habit), so
    ``sparsevit_sdk.SearchSession`` and ``sparsevit_sdk.search.SearchSession`` are one object."""
    homes: dict[str, list[str]] = {}
    foreign = []
    for name in _public_packages()[1:]:
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            homes.setdefault(public, []).append(name)
            defined_in = getattr(getattr(module, public), "__module__", None)  # classes and functions say
            if isinstance(defined_in, str) and not defined_in.startswith(name + "."):
                foreign.append(f"{name}.{public} (defined in {defined_in})")
    root = importlib.import_module(PACKAGE.name)
    unexported = []
    for public in root.__all__:
        family = _home_package(getattr(getattr(root, public), "__module__", None) or "")
        if family is not None and homes.get(public) != [family]:
            unexported.append(f"{public} (its package {family} does not export it)")
    assert {n: h for n, h in homes.items() if len(h) > 1} == {} and foreign == [] and unexported == []


def _defined_privately(tree: ast.Module) -> set[str]:
    """The ``_names`` a module defines: functions, classes, assignments, attributes set on ``self``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_uses_another_modules_private_names():
    """A ``_name`` is its module's business: imported, or read off an object, elsewhere it is a seam."""
    trees = {_module_name(path): ast.parse(path.read_text()) for path in PACKAGE.rglob("*.py")}
    own = {module: _defined_privately(tree) for module, tree in trees.items()}
    ours = set().union(*own.values())
    crossings = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                crossings += [f"{module}: import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__") and a.name in ours]
            elif (isinstance(node, ast.Attribute) and node.attr in ours and node.attr not in own[module]
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                crossings.append(f"{module}: {ast.unparse(node)}")
    assert crossings == []
