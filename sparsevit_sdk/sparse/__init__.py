"""Window-sparse Swin kernels and the converters that make a user's Swin window-sparse."""

from .convert import set_window_score
from .stage import SparseSwinBlock, SparseSwinStage
from .windows import WINDOW_SCORES, Windowing, WindowLayout, top_windows

__all__ = [
    "WINDOW_SCORES", "SparseSwinBlock", "SparseSwinStage", "WindowLayout", "Windowing",
    "set_window_score", "top_windows",
]
