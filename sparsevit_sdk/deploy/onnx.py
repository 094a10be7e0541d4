"""ONNX export of a window-sparse model: one static graph per sparsity config.

How many windows each block keeps is fixed by the config, so the exported graph has no
data-dependent shapes in the window path: scores → TopK with a constant k → Gather of the
kept rows → the block → ScatterND back (no NonZero, no dynamic slicing).  A dense config
exports as a plain Swin graph (no scoring at all).  The kernels scatter in place in eager
mode; under ``torch.export`` they return a new tensor instead, which is what a graph can
hold (``SparseSwinBlock.forward``).

The graph's input and outputs carry the model's own names, so code written for the model reads
the graph too: a Hugging Face model's ``pixel_values`` → ``logits`` (its ``main_input_name`` and
output fields), otherwise ``images`` → ``output`` (``output_0`` … for several).  Whatever runs a
graph reads the names from it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from .._atomic import atomic_write, check_writable
from ..arch import check_input_shape
from ..config import SparsityConfig
from ..devices import TORCH_DTYPES, dtype_name
from ..outputs import named_tensors
from ..sparse.convert import set_sparsity, sparse_backbone
from ..sparse.state import check_config, preserved

DEFAULT_OPSET = 18  # the torch.export-based exporter's own opset; LayerNormalization is one op since 17
EXPORT_DTYPES = ("fp32", "fp16")
INPUT_NAME = "images"  # the graph input's name where the model declares none (Hugging Face's main_input_name)


def input_name(model: nn.Module) -> str:
    """What ``model`` calls its image batch: Hugging Face's ``main_input_name`` (``pixel_values``), else ``images``."""
    name = getattr(model, "main_input_name", None)
    return name if isinstance(name, str) and name else INPUT_NAME


def _names(given: Sequence[str] | None, default: list[str], what: str) -> list[str]:
    """``given`` (checked: one distinct name per tensor) or the model's own ``default``."""
    if given is None:
        return default
    names = [given] if isinstance(given, str) else list(given)
    if len(names) != len(default) or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what}_names={given!r}: the model has {len(default)} {what}(s) ({', '.join(default)}); "
                         f"pass {len(default)} distinct non-empty names, or leave {what}_names out for these")
    return names


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | os.PathLike,
    config: SparsityConfig | None = None,
    *,
    dtype: str = "fp32",
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    optimize: bool = True,
) -> Path:
    """Write ``model``'s own forward at ``config`` (default: its current sparsity) as ONNX.

    ``model`` is a :class:`SparseSwin` or any model :func:`sparsify` made (a timm classifier
    exports its logits, a SparseSwin its four stage maps).  The graph is traced for
    ``input_shape`` ``(B, C, H, W)``: batch and size are fixed, as the windows kept are.
    ``dtype="fp16"`` exports weights, input and activations in half precision (what a GPU
    runtime such as TensorRT deploys); the window scores stay fp32 inside the graph, so it
    keeps the windows the fp32 model keeps.  The config, dtype and path are checked before
    anything runs and the file is written atomically.  ``model`` itself is left as it was (its
    sparsity, every module's mode, each weight and buffer bit for bit in its own dtype), on
    error and Ctrl-C too.

    ``input_names`` (one) and ``output_names`` (one per output tensor) rename the graph's input and
    outputs; by default they are the model's own (see the module docstring).

    Args:
        model: a :class:`SparseSwin` or a model :func:`sparsify` made.
        input_shape: ``(B, C, H, W)`` the graph is traced for, in pixels; fixed in the graph.
        path: the ``.onnx`` file to write (one self-contained file).
        config: the sparsity to export (a :class:`SparsityConfig` of this model); None exports
            the model's current sparsity.
        dtype: ``"fp32"`` or ``"fp16"``.
        opset: the ONNX opset version.
        input_names: the graph input's name (default: ``pixel_values`` for a Hugging Face
            model, else ``images``).
        output_names: one name per output tensor (default: the model's output fields, else
            ``output`` / ``output_0`` …).
        optimize: run onnxscript's graph optimizer (constant folding, dead-code removal) on the
            exported graph, as ``torch.onnx.export`` does by default.  ``False`` exports about a
            third faster (swin_micro at 112 px: 10 s instead of 15 s), for a graph made only to
            be timed or checked in ONNX Runtime, which optimizes the graph it loads itself.

    Returns:
        The path written.

    Raises:
        ValueError: a config for another model or out of order, an unsupported dtype, an input
            shape the model refuses, names that do not fit the model's inputs and outputs, or a
            path that cannot be written.
    """
    backbone = sparse_backbone(model)
    shape = check_input_shape(input_shape, backbone.in_chans)
    backbone.architecture.check_fits(shape, fix="a smaller input shape (--resolution)")
    dtype = dtype_name(dtype)
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"cannot export in {dtype!r}; use one of {', '.join(EXPORT_DTYPES)}")
    if config is not None:
        check_config(model, config)
    inputs = _names(input_names, [input_name(model)], "input")
    path = check_writable(path)
    device = next(model.parameters()).device
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device, TORCH_DTYPES[dtype])
    # cast in place and put the original tensors back afterwards: bit-exact, and no second copy of the model
    with preserved(model, training=False, dtype=TORCH_DTYPES[dtype]), torch.no_grad():
        if config is not None:
            set_sparsity(model, config)  # validates the config's order before anything is traced
        outputs = _names(output_names, [name for name, _ in named_tensors(model(x))], "output")
        atomic_write(path, lambda tmp: torch.onnx.export(
            model, (x,), str(tmp), dynamo=True, opset_version=opset, input_names=inputs, output_names=outputs,
            verbose=False, external_data=False,  # one self-contained file: the rename is the whole write
            optimize=optimize))
    return path
