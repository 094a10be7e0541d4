"""Deploying a searched model: export to the runtimes people ship with, and time it there."""

from .onnx import export_onnx
from .runtimes import RUNTIMES, check_runtime, runtime_call

__all__ = ["RUNTIMES", "check_runtime", "export_onnx", "runtime_call"]
