"""sparsevit-sdk: make window-based vision transformers fast by skipping whole windows.

The public names below load on first use, so ``import sparsevit_sdk.sparse`` (the kernels)
does not pull in xgboost, DEAP or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_EXPORTS = {  # public name -> the module that defines it, or the package that exports its family
    "DocumentError": "._documents",
    "SearchSpace": ".config", "SparsityConfig": ".config",
    "get_hardware": ".hardware",
    "build_model": ".models", "list_models": ".models",
    "LatencyPredictor": ".predictor", "for_device": ".local",
    "LatencyStats": ".profiler", "measure_latency": ".profiler",
    "Target": ".target",
    "SearchResult": ".search", "SearchSession": ".search",
    "SparseSwin": ".sparse", "search_space": ".sparse", "set_sparsity": ".sparse",
    "sparse_backbone": ".sparse", "sparsify": ".sparse",
    "export_onnx": ".deploy",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
