"""sparsevit-sdk: make window-based vision transformers fast by skipping whole windows."""

from .config import SearchSpace, SparsityConfig
from .models import build_model, list_models
from .profiler.timing import LatencyStats, measure_latency
from .sparse import SparseSwin, sparsify

__version__ = "0.1.0"

__all__ = [
    "LatencyStats", "SearchSpace", "SparseSwin", "SparsityConfig", "build_model",
    "list_models", "measure_latency", "sparsify",
]
