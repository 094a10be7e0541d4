"""Window-sparse Swin kernels and the converters that make a user's Swin window-sparse."""

from .convert import set_sparsity, sparse_backbone, sparsify
from .swin import SparseSwin, SparseSwinBlock, SparseSwinStage
from .windows import Windowing, WindowLayout, kept_windows, top_windows

__all__ = [
    "SparseSwin", "SparseSwinBlock", "SparseSwinStage", "WindowLayout", "Windowing",
    "kept_windows", "set_sparsity", "sparse_backbone", "sparsify", "top_windows",
]
