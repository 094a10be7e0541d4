"""Deploying a searched model: export to the runtimes people ship with."""

from .onnx import export_onnx

__all__ = ["export_onnx"]
