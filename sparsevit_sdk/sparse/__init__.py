"""Window-sparse Swin kernels and the converters that make a user's Swin window-sparse."""

from .convert import set_sparsity, set_window_score, sparse_backbone, sparsify
from .swin import SparseSwin, SparseSwinBlock, SparseSwinStage
from .windows import WINDOW_SCORES, Windowing, WindowLayout, kept_windows, top_windows

__all__ = [
    "WINDOW_SCORES", "SparseSwin", "SparseSwinBlock", "SparseSwinStage", "WindowLayout", "Windowing",
    "kept_windows", "set_sparsity", "set_window_score", "sparse_backbone", "sparsify", "top_windows",
]
