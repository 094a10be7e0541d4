"""Package layering: the kernels import light, and no module reaches back up to the package root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import sparsevit_sdk

PACKAGE = Path(sparsevit_sdk.__file__).parent


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


def test_the_predictor_reads_profiles_without_the_profiler():
    """nn-Meter's split: the predictor meets the profiler only in the dataset package."""
    code = ("import sys, sparsevit_sdk.predictor; "
            "print(' '.join(m for m in sys.modules if m.startswith('sparsevit_sdk.profiler')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
