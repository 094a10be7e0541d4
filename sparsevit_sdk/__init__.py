"""sparsevit-sdk: make window-based vision transformers fast by skipping whole windows."""

from ._documents import DocumentError
from ._version import __version__
from .config import SearchSpace, SparsityConfig
from .hardware import get_hardware
from .models import build_model, list_models
from .predictor import LatencyPredictor
from .profiler.timing import LatencyStats, measure_latency
from .search import SearchResult, SearchSession
from .sparse import SparseSwin, set_sparsity, sparse_backbone, sparsify

__all__ = [
    "__version__", "DocumentError", "LatencyPredictor", "LatencyStats", "SearchResult", "SearchSession",
    "SearchSpace", "SparseSwin", "SparsityConfig", "build_model", "get_hardware", "list_models",
    "measure_latency", "set_sparsity", "sparse_backbone", "sparsify",
]
