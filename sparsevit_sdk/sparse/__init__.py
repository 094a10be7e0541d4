"""Window-sparse Swin kernels and the converters that make a user's Swin window-sparse."""

from .convert import search_space, set_sparsity, set_window_score, sparse_backbone, sparsify
from .stage import SparseSwinBlock, SparseSwinStage
from .swin import SparseSwin
from .windows import WINDOW_SCORES, Windowing, WindowLayout, pad_to_windows, top_windows

__all__ = [
    "WINDOW_SCORES", "SparseSwin", "SparseSwinBlock", "SparseSwinStage", "WindowLayout", "Windowing",
    "pad_to_windows", "search_space", "set_sparsity", "set_window_score", "sparse_backbone", "sparsify",
    "top_windows",
]
