"""A SparseSwin's architecture as data: the signature format, stage geometry, unit costs.

The bottom layer that the kernels, the profiler, the predictor and the search share, so
each of these facts has one home:

- the *signature* (``swin-e96-d2.2.6.2-h3.6.12.24-w7-p4``), which a config carries to name
  the model its knobs belong to: :func:`format_signature` writes it, :meth:`Architecture.from_signature`
  reads it back;
- the *geometry* of every stage: token maps from an image size (``PatchEmbed`` pads up to a
  multiple of the patch, ``PatchMerging`` halves rounding up), padding to whole windows,
  windows per stage and windows kept at a sparsity;
- the *costs* of a layer unit (analytic FLOPs and bytes moved, :func:`unit_costs`), which the
  predictor's features and the profiler's progress estimate both use.

Pure Python and numpy: importing it loads no torch, pandas or xgboost.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}

# tensors of a token map's size a block holds at its peak (qkv 3, the MLP's hidden layer 4 at ratio 4,
# attention scores, norms, the residual): what sizes the activation estimate of a forward
ACTIVATION_COPIES = 12
_SIGNATURE = re.compile(r"^swin(v2)?-e(\d+)-d([\d.]+)-h([\d.]+)-w([\d.]+)-p(\d+)$")
BLOCK_KINDS: tuple[str, ...] = ("v1", "v2")  # Swin V1 and Swin V2 blocks
CPB_HIDDEN = 512  # width of Swin V2's position-bias MLP (2 → 512 → heads)


# -- signature ---------------------------------------------------------------------------------

def format_signature(embed_dim: int, depths: Sequence[int], num_heads: Sequence[int],
                     window_size: Sequence[int], patch_size: int, block: str = "v1") -> str:
    """Architecture id stored with every config; one window size stands for all stages when they
    agree.  Swin V2 reads ``swinv2-…``: its blocks cost and behave differently at the same shapes."""
    def join(values: Sequence[int]) -> str:
        return ".".join(map(str, values))

    w = str(window_size[0]) if len(set(window_size)) == 1 else join(window_size)
    prefix = "swin" if block == "v1" else f"swin{block}"
    return f"{prefix}-e{embed_dim}-d{join(depths)}-h{join(num_heads)}-w{w}-p{patch_size}"


def signature_block(signature: str) -> str:
    """The block kind a signature names: ``"v2"`` for ``swinv2-…``, else ``"v1"``."""
    return "v2" if str(signature).startswith("swinv2-") else "v1"


def signature_blocks(signatures: Sequence[str]) -> np.ndarray:
    """:func:`signature_block` of every signature at once (a profile column, a list)."""
    return np.where(np.char.startswith(np.asarray(signatures, dtype=str), "swinv2-"), "v2", "v1")


def signature_patch_size(signature: str) -> int:
    """The patch size a signature ends in (``-p4`` → 4)."""
    m = re.search(r"-p(\d+)$", str(signature))
    if m is None:
        raise ValueError(f"patch_embed rows need a SparseSwin signature ending in -p<patch>, got {signature!r}")
    return int(m[1])


# -- geometry ----------------------------------------------------------------------------------

def padding(size: int, multiple: int) -> int:
    """How much bottom/right padding brings ``size`` up to a multiple of ``multiple``."""
    return (-size) % multiple


def padded(size: int, multiple: int) -> int:
    """``size`` padded up to a multiple of ``multiple`` (a window grid's side, a patch grid's input)."""
    return size + padding(size, multiple)


def check_input_shape(input_shape: Sequence[int], in_chans: int | None = None) -> tuple[int, ...]:
    """``input_shape`` as ``(B, C, H, W)`` ints, or a ValueError that names what is wrong: a
    latency timed or predicted for a shape no model can run would be a number for nothing."""
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):  # a config or a path where the shape belongs: the old argument order
        raise ValueError(f"input_shape must be (B, C, H, W) integers, got {input_shape!r}; every call takes "
                         "(model, input_shape, ...), e.g. predict_config(model, input_shape, config)") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be (B, C, H, W) with every size >= 1, got {tuple(input_shape)}")
    if in_chans is not None and shape[1] != in_chans:
        raise ValueError(f"input_shape {shape} has {shape[1]} channels, but the model takes {in_chans}")
    return shape


def stage_tokens(img_h: int, img_w: int, patch_size: int, num_stages: int) -> list[tuple[int, int]]:
    """Unpadded token map ``(H_i, W_i)`` of every stage for an ``img_h x img_w`` image: the
    patch embedding pads to whole patches, every later stage's merging halves, rounding up."""
    h, w = math.ceil(img_h / patch_size), math.ceil(img_w / patch_size)
    out = []
    for i in range(num_stages):
        if i:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        out.append((h, w))
    return out


def num_windows(h: int, w: int, window_size: int) -> int:
    """Windows per image of an ``h x w`` map padded to whole windows."""
    return math.ceil(h / window_size) * math.ceil(w / window_size)


def kept_windows(num_windows: int, sparsity: float) -> int:
    """Windows kept per image at ``sparsity``: ``int(nW * (1 - s))``, at least one.

    A tiny epsilon absorbs float error (``10 * (1 - 0.3)`` is 6.999…); the floor of one
    keeps a stage from degenerating to the identity at low resolution.
    """
    return max(1, int(math.floor(num_windows * (1.0 - sparsity) + 1e-6)))


@dataclass(frozen=True)
class Architecture:
    """What decides a SparseSwin's unit shapes: a model's (``SparseSwin.architecture``) or read
    from its signature."""

    signature: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: tuple[int, ...]
    patch_size: int
    mlp_ratio: float = 4.0
    in_chans: int = 3
    block: str = "v1"

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    @classmethod
    def from_signature(cls, signature: str, mlp_ratio: float = 4.0) -> Architecture:
        """Parse what :func:`format_signature` wrote (the MLP ratio is not part of it)."""
        m = _SIGNATURE.match(signature)
        if m is None:
            raise ValueError(f"cannot read a Swin architecture from signature {signature!r}")
        depths = tuple(int(v) for v in m[3].split("."))
        windows = tuple(int(v) for v in m[5].split("."))
        return cls(signature, int(m[2]), depths, tuple(int(v) for v in m[4].split(".")),
                   windows * len(depths) if len(windows) == 1 else windows, int(m[6]), float(mlp_ratio),
                   block="v2" if m[1] else "v1")

    def stage_tokens(self, img_h: int, img_w: int) -> list[tuple[int, int]]:
        """Unpadded token map ``(H_i, W_i)`` of every stage for an ``img_h x img_w`` image."""
        return stage_tokens(img_h, img_w, self.patch_size, len(self.depths))

    def windows_total(self, img_h: int, img_w: int) -> list[int]:
        """Windows per image in every stage (of the padded grid)."""
        return [num_windows(h, w, ws) for (h, w), ws in zip(self.stage_tokens(img_h, img_w), self.window_size)]

    def activation_bytes(self, input_shape: Sequence[int], dtype_bytes: int = 4) -> int:
        """A rough peak of one forward's activations: the largest stage's padded token map times
        the tensors a block holds at once (qkv, the MLP's hidden layer, scores, the residual)."""
        b, _, h, w = input_shape
        return max(b * padded(th, ws) * padded(tw, ws) * dim * ACTIVATION_COPIES * dtype_bytes
                   for (th, tw), ws, dim in zip(self.stage_tokens(h, w), self.window_size, self.dims))

    def check_fits(self, input_shape: Sequence[int], *, fix: str = "a smaller resolution") -> None:
        """Refuse, before any allocation, an input whose activations cannot fit this machine's
        free memory, with the estimate and ``fix``."""
        need = self.activation_bytes(input_shape)
        free = available_memory()
        if free is not None and need > free:
            raise ValueError(f"input {'x'.join(map(str, input_shape))} needs about {need / 2**30:.1f} GiB of "
                             f"activations for {self.signature}, and this machine has {free / 2**30:.1f} GiB free; "
                             f"use {fix}")


def available_memory() -> int | None:
    """Free physical memory in bytes where the OS says (Linux, macOS), else None."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


# -- costs -------------------------------------------------------------------------------------

def unit_costs(units: Mapping[str, Sequence]) -> tuple[np.ndarray, np.ndarray]:
    """Analytic FLOPs and bytes moved of every unit (whole batch); a roofline's two inputs.

    ``units`` maps the descriptor columns (``layer``, ``signature``, ``batch``, ``dim``,
    ``out_dim``, ``heads``, ``window``, ``mlp_ratio``, ``in_h``, ``in_w``, ``dtype``,
    ``windows_total``, ``windows_kept``) to equal-length sequences: a profile's DataFrame,
    or a dict of one-element lists for a single unit.

    Counts are first order: matmuls and attention as 2 FLOPs per multiply-add, norms and
    activations a few FLOPs per element; bytes are every activation read and written once
    per op plus the weights.  They only need to rank and scale units, not be exact.
    """
    def col(name: str) -> np.ndarray:
        return np.asarray(units[name], dtype=float)

    kind = np.asarray(units["layer"])
    B, C, out, r = col("batch"), col("dim"), col("out_dim"), col("mlp_ratio")
    N = col("window") ** 2
    h, w = col("in_h"), col("in_w")
    elt = np.array([DTYPE_BYTES.get(d, np.nan) for d in units["dtype"]], dtype=float)
    flops, moved = np.zeros(len(kind)), np.zeros(len(kind))

    sel = kind == "patch_embed"
    if sel.any():
        p = np.array([signature_patch_size(s) for s in np.asarray(units["signature"])[sel]], dtype=float)
        T = np.ceil(h[sel] / p) * np.ceil(w[sel] / p)
        flops[sel] = B[sel] * T * out[sel] * (2 * C[sel] * p * p + 8)
        moved[sel] = B[sel] * (C[sel] * h[sel] * w[sel] + 3 * T * out[sel]) + C[sel] * p * p * out[sel]

    sel = kind == "patch_merge"
    T = np.ceil(h / 2) * np.ceil(w / 2)
    flops[sel] = (B * T * 4 * C * (2 * out + 8))[sel]
    moved[sel] = (B * (h * w * C + 3 * T * 4 * C + T * out) + 4 * C * out)[sel]

    windowed = col("windows_total") * N  # tokens of the padded grid
    sel = kind == "score"
    flops[sel] = (B * windowed * (3 * C + 4))[sel]
    moved[sel] = (B * windowed * (C + 2))[sel]

    sel = kind == "norm"
    flops[sel] = (8 * B * h * w * C)[sel]
    moved[sel] = (2 * B * h * w * C)[sel]

    sel = kind == "block_pair"
    M = B * col("windows_kept") * N  # rows each block runs on
    heads = col("heads")
    block_flops = M * (2 * C * C * (4 + 2 * r) + 4 * N * C + 16 * C + 8 * r * C) + 5 * M * heads * N
    block_moved = M * (C * 21 + 6 * r * C) + M * heads * N + C * C * (4 + 2 * r)
    # Swin V2: normalising q and k per row, and the position-bias MLP over every offset of the
    # window, run once per block whatever it keeps (so a fixed cost that sparsity cannot cut)
    v2 = signature_blocks(units["signature"]) == "v2"
    offsets = (2 * col("window") - 1) ** 2
    cpb_flops = offsets * CPB_HIDDEN * (2 * 2 + 2 * heads) + 3 * heads * N * N
    block_flops = block_flops + v2 * (6 * M * C + cpb_flops)
    block_moved = block_moved + v2 * (4 * M * C + offsets * CPB_HIDDEN * 2 + heads * N * N)
    flops[sel] = 2 * block_flops[sel]
    moved[sel] = 2 * block_moved[sel]
    return flops, moved * elt
