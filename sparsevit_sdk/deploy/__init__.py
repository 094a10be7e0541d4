"""Deploying a searched model: export it to the runtimes people ship with (``runtimes.py`` times it there)."""

from .onnx import export_onnx

__all__ = ["export_onnx"]
