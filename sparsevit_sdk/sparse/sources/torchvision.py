"""torchvision Swin V1 and V2: ``swin_t`` / ``swin_s`` / ``swin_b`` and ``swin_v2_t`` / ``swin_v2_s`` /
``swin_v2_b`` (one ``SwinTransformer`` class, told apart by its block class).

torchvision pads each block's map to whole windows, then rolls the padded map, and skips the
shift along a side whose padded length is one window, at every call: the default
:class:`~sparsevit_sdk.sparse.windows.Windowing`.  The sparse stages (patch merging folded in)
replace ``features[1:]``; torchvision's own stem, norm, pooling and head stay.  A V2 stores one
fused qkv bias and ignores its key third at every call; the sparse attention does the same.
The new ``features`` saves and loads under torchvision's keys (:class:`~.keys.SourceKeys`), its
saved position indices included, so ``swin_t()`` loads a sparse model's state_dict strictly.
"""

from __future__ import annotations

import torch.nn as nn

from ..swin import SparseSwin
from ..windows import DEFAULT_WINDOWING
from ._adopt import adopt_block, adopt_merge, attention_parts, empty_view, pair, square, unsupported
from .keys import SourceKeys

NAME = "torchvision"
WINDOWING = DEFAULT_WINDOWING
SUPPORTED = "torchvision swin_t / swin_s / swin_b and swin_v2_t / swin_v2_s / swin_v2_b"
BLOCK_KINDS = {"SwinTransformerBlock": "v1", "SwinTransformerBlockV2": "v2"}  # torchvision's block class → kind


def matches(model: nn.Module) -> bool:
    return type(model).__name__ == "SwinTransformer" and type(model).__module__.startswith("torchvision.")


def convert(model: nn.Module) -> SparseSwin:
    """Swap ``model.features``' stages for sparse ones (in place) and return the sparse view."""
    feats = model.features
    stages, merges = [feats[i] for i in range(1, len(feats), 2)], [feats[i] for i in range(2, len(feats), 2)]
    kinds = {type(b).__name__ for s in stages for b in s}
    if len(kinds) != 1 or not kinds <= BLOCK_KINDS.keys():
        raise unsupported(NAME, f"blocks of classes {sorted(kinds)}; supported are one of {sorted(BLOCK_KINDS)}")
    block = BLOCK_KINDS[kinds.pop()]
    stem = feats[0]
    first = stages[0][0]
    view = empty_view(
        NAME,
        dims=[s[0].norm1.normalized_shape[0] for s in stages],
        depths=[len(s) for s in stages],
        num_heads=[s[0].attn.num_heads for s in stages],
        windows=[square(s[0].attn.window_size, NAME, i) for i, s in enumerate(stages)],
        shifts=[pair(s[1].attn.shift_size) if len(s) > 1 else (0, 0) for s in stages],
        patch_embed=stem, norm=model.norm, in_chans=stem[0].in_channels, patch_size=stem[0].kernel_size[0],
        mlp_ratio=first.mlp[0].out_features / first.mlp[0].in_features,
        qkv_bias=first.attn.qkv.bias is not None, windowing=WINDOWING, block=block,
    )
    for dst, merge in zip(view.stages[1:], merges):
        adopt_merge(dst.downsample, merge.norm, merge.reduction)
    for dst, src in zip(view.stages, stages):
        for d, b in zip(dst.blocks, src):
            adopt_block(d, NAME, norm1=b.norm1, norm2=b.norm2, mlp=b.mlp, proj=b.attn.proj, qkv=b.attn.qkv,
                        **attention_parts(b.attn, block))
    features = nn.Sequential(stem, *view.stages)
    stages = {f"{i + 1}.": f"{2 * i + 1}." for i in range(len(view.stages))}  # torchvision: stage, merge, stage...
    model.features = SourceKeys.pair(model.features, features, stages, NAME).install(features)
    return view
