"""Every package's ``__all__`` resolves, the headline names import from the root and from their
family's package, and the benchmarks and examples use those exports only (no ``_private`` module, no
module inside a package)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sparsevit_sdk

PACKAGE = Path(sparsevit_sdk.__file__).parent
PACKAGES = [PACKAGE.name] + sorted(f"{PACKAGE.name}.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py"))
SCRIPTS = sorted(p for folder in ("benchmarks", "examples") for p in (PACKAGE.parent / folder).glob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_resolves(package):
    module = importlib.import_module(package)
    missing = [name for name in getattr(module, "__all__", ()) if getattr(module, name, None) is None]
    assert missing == []


def test_the_names_a_newcomer_reaches_for_import():
    from sparsevit_sdk import export_onnx
    from sparsevit_sdk.deploy import export_onnx as deploy_export
    from sparsevit_sdk.predictor import LatencyPredictor
    from sparsevit_sdk.search import SearchResult, SearchSession
    from sparsevit_sdk.target import Target

    assert export_onnx is deploy_export
    assert (sparsevit_sdk.SearchSession, sparsevit_sdk.SearchResult) == (SearchSession, SearchResult)
    assert sparsevit_sdk.LatencyPredictor is LatencyPredictor
    assert sparsevit_sdk.Target is Target


def _reaches(path: Path) -> list[str]:
    """``sparsevit_sdk`` imports of a script that name a private module or a module inside a package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] != PACKAGE.name or len(parts) == 1:
                continue
            if parts[1].startswith("_") or len(parts) > 2:  # only a package has modules inside
                found.append(f"{path.name}: {name}")
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_use_the_public_api_only(script):
    assert _reaches(script) == []
