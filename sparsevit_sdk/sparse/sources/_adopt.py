"""What every source converter shares: an empty sparse view, and blocks that adopt the source's modules.

A converter never copies a weight: each block of the view takes the source's own norm, MLP,
projection and bias-table objects, so the two stay one model (fine-tuning either trains both)
and the source's epsilons and activations hold exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ..stage import PatchMerging, SparseSwinBlock
from ..swin import SparseSwin
from ..windows import Windowing


def unsupported(source: str, feature: str, hint: str = "") -> TypeError:
    """The error for a source model the kernels cannot reproduce exactly: never a different model."""
    return TypeError(f"cannot sparsify this {source} Swin: {feature}" + (f"; {hint}" if hint else ""))


def square(window: int | Sequence[int], source: str, stage: int) -> int:
    """A window side, or a TypeError naming a non-square window (the kernels index square windows)."""
    w = (window, window) if isinstance(window, int) else tuple(int(v) for v in window)
    if w[0] != w[1]:
        raise unsupported(
            source, f"stage {stage + 1} has a non-square window {w}",
            "timm clamps a window to the feature map when img_size makes a stage smaller than the window "
            "on one side; build the model with an img_size whose stage maps cover the window on both sides",
        )
    return int(w[0])


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def empty_view(
    source: str, *, dims: Sequence[int], depths: Sequence[int], num_heads: Sequence[int],
    windows: Sequence[int], shifts: Sequence[tuple[int, int]], patch_embed: nn.Module, norm: nn.Module | None,
    in_chans: int, patch_size: int, mlp_ratio: float, qkv_bias: bool, windowing: Windowing, fused_qkv: bool = True,
    block: str = "v1",
) -> SparseSwin:
    """A SparseSwin of the source's shape whose layers are about to be replaced by the source's.

    Built without drawing from torch's global RNG (its own initial weights are discarded), so
    converting a model never changes the random numbers a user's script sees next.
    """
    dims = [int(d) for d in dims]
    if any(d != dims[0] * 2**i for i, d in enumerate(dims)):
        raise unsupported(source, f"stage widths {dims} do not double from stage to stage")
    with torch.random.fork_rng(devices=[]):
        view = SparseSwin(
            in_chans=in_chans, embed_dim=dims[0], depths=depths, num_heads=num_heads, window_size=windows,
            patch_size=patch_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, fused_qkv=fused_qkv,
            windowing=windowing, block=block,
        )
    view.patch_embed = patch_embed
    view.norm = norm if norm is not None else nn.Identity()
    for stage, shift in zip(view.stages, shifts):
        stage.shift = shift
    return view


def adopt_block(
    block: SparseSwinBlock, source: str, *, norm1: nn.Module, norm2: nn.Module, mlp: nn.Module,
    proj: nn.Linear, table: nn.Parameter | None = None, index: torch.Tensor | None = None,
    qkv: nn.Linear | None = None,
    q: nn.Linear | None = None, k: nn.Linear | None = None, v: nn.Linear | None = None,
    logit_scale: nn.Parameter | None = None, cpb_mlp: nn.Module | None = None, coords: torch.Tensor | None = None,
    q_bias: nn.Parameter | None = None, v_bias: nn.Parameter | None = None,
) -> None:
    """Make ``block`` run on the source block's own modules.

    Swin V1 brings its bias ``table``; Swin V2 its ``logit_scale``, position-bias ``cpb_mlp`` and
    the offsets it feeds it (``coords``, whose scaling encodes the pretrained window), plus
    separate ``q_bias``/``v_bias`` where the source keeps its fused projection bias-free.  A
    source's relative-position ``index`` (any shape, the same values) is adopted too, so a source
    that saves it (torchvision) finds it among the sparse model's tensors.
    """
    attn = block.attn
    if index is not None:
        if not torch.equal(index.reshape(-1).cpu(), attn.relative_position_index.reshape(-1).cpu()):
            raise unsupported(source, "a relative-position index other than Swin's")
        attn.relative_position_index = index
    dim = proj.out_features
    if attn.fused_qkv:
        if qkv.out_features != 3 * dim:
            raise unsupported(source, f"a head width other than dim / num_heads (qkv gives {qkv.out_features} "
                                      f"features for dim {dim})")
        attn.qkv = qkv
    else:
        attn.q, attn.k, attn.v = q, k, v
    if attn.kind == "v2":
        expected = attn.relative_coords_table.shape
        if coords.shape != expected:
            raise unsupported(source, f"position-bias offsets of shape {tuple(coords.shape)}, expected "
                                      f"{tuple(expected)} for a {attn.window_size}-token window")
        attn.logit_scale, attn.cpb_mlp, attn.q_bias, attn.v_bias = logit_scale, cpb_mlp, q_bias, v_bias
        attn.relative_coords_table = coords
    else:
        expected = attn.relative_position_bias_table.shape
        if table.shape != expected:
            raise unsupported(source, f"relative position bias table of shape {tuple(table.shape)}, "
                                      f"expected {tuple(expected)} for a {attn.window_size}-token window")
        attn.relative_position_bias_table = table
    attn.proj = proj
    block.norm1, block.norm2, block.mlp = norm1, norm2, mlp


def attention_parts(attn: nn.Module, block: str) -> dict:
    """The position-bias parts of a timm or torchvision window attention (they share the names), as
    :func:`adopt_block`'s keywords: the position index; V1's bias table; V2's logit scale, bias MLP,
    its input offsets, and timm's separate q/v biases (torchvision keeps them in its fused bias)."""
    if block == "v1":
        return dict(table=attn.relative_position_bias_table, index=attn.relative_position_index)
    return dict(index=attn.relative_position_index, logit_scale=attn.logit_scale, cpb_mlp=attn.cpb_mlp,
                coords=attn.relative_coords_table,
                q_bias=getattr(attn, "q_bias", None), v_bias=getattr(attn, "v_bias", None))


def adopt_merge(merge: PatchMerging, norm: nn.Module, reduction: nn.Linear) -> None:
    """Patch merging on the source's norm and reduction (same 2x2 channel order in every library)."""
    merge.norm, merge.reduction = norm, reduction
