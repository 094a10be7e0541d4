"""Window-sparse Swin kernels and converters."""

from .convert import sparsify
from .swin import SparseSwin, SparseSwinBlock, SparseSwinStage
from .windows import WindowLayout, kept_windows, top_windows

__all__ = [
    "SparseSwin", "SparseSwinBlock", "SparseSwinStage", "WindowLayout",
    "kept_windows", "sparsify", "top_windows",
]
