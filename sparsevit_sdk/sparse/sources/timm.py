"""timm Swin V1 and V2: ``SwinTransformer`` / ``SwinTransformerV2`` (every ``img_size`` mode, any
window, a V2's pretrained window included) and their ``features_only`` forms.

timm rolls the unpadded map and pads afterwards, and fixes each block's window and shift
when the model is built (or resized with ``set_input_size``): a stage whose map was no larger
than the window at that size keeps no shift at every later input size.  The converter reads
those frozen values from the blocks and runs them with :data:`WINDOWING`.

The sparse stages replace timm's own in the model (``layers``, or ``layers_<i>`` of a
``features_only`` model), so timm's patch embedding, size checks, ``forward_head``,
``forward_intermediates`` and pooling stay timm's, and the state_dict keys do not change.
"""

from __future__ import annotations

import torch.nn as nn

from ..swin import SparseSwin
from ..windows import Windowing
from ._adopt import adopt_block, adopt_merge, attention_parts, empty_view, pair, square, unsupported

NAME = "timm"
WINDOWING = Windowing(roll_then_pad=True, no_shift="never")
SUPPORTED = ("timm SwinTransformer and SwinTransformerV2 (any img_size / strict_img_size / dynamic_img_size, "
             "features_only)")
STAGE_KINDS = {"SwinTransformerStage": "v1", "SwinTransformerV2Stage": "v2"}  # timm's stage class → block kind


def _is_stage(module: nn.Module) -> bool:
    return type(module).__name__ in STAGE_KINDS and type(module).__module__.startswith("timm.")


def _stage_slots(model: nn.Module) -> list[str] | None:
    """Names of the children of ``model`` that hold its timm Swin stages, in order, or None."""
    if not type(model).__module__.startswith("timm."):
        return None
    if type(model).__name__ in ("SwinTransformer", "SwinTransformerV2"):
        return ["layers"]
    slots = [name for name, child in model.named_children() if _is_stage(child)]
    return slots or None


def matches(model: nn.Module) -> bool:
    return _stage_slots(model) is not None


def convert(model: nn.Module) -> SparseSwin:
    """Swap ``model``'s Swin stages for sparse ones (in place) and return the sparse view of it."""
    slots = _stage_slots(model)
    stages = list(model.layers) if slots == ["layers"] else [getattr(model, s) for s in slots]
    kinds = {STAGE_KINDS.get(type(s).__name__) for s in stages}
    if not all(_is_stage(s) for s in stages) or len(kinds) != 1:
        raise unsupported(NAME, f"{type(model).__name__} holds stages other than timm SwinTransformerStage or "
                                "SwinTransformerV2Stage, or a mix of both")
    block = kinds.pop()
    embed = model.patch_embed
    proj = embed.proj
    first = stages[0].blocks[0]
    view = empty_view(
        NAME,
        dims=[s.blocks[0].norm1.normalized_shape[0] for s in stages],
        depths=[len(s.blocks) for s in stages],
        num_heads=[s.blocks[0].attn.num_heads for s in stages],
        windows=[square(s.blocks[0].window_size, NAME, i) for i, s in enumerate(stages)],
        shifts=[pair(s.blocks[1].shift_size) if len(s.blocks) > 1 else (0, 0) for s in stages],
        patch_embed=embed, norm=getattr(model, "norm", None), in_chans=proj.in_channels,
        patch_size=proj.kernel_size[0], mlp_ratio=first.mlp.fc1.out_features / first.mlp.fc1.in_features,
        qkv_bias=first.attn.qkv.bias is not None or getattr(first.attn, "q_bias", None) is not None,
        windowing=WINDOWING, block=block,
    )
    if tuple(proj.kernel_size) != (view.patch_size,) * 2:
        raise unsupported(NAME, f"non-square patches {tuple(proj.kernel_size)}")
    for dst, src in zip(view.stages, stages):
        if not isinstance(src.downsample, nn.Identity):
            adopt_merge(dst.downsample, src.downsample.norm, src.downsample.reduction)
        for d, b in zip(dst.blocks, src.blocks):
            adopt_block(d, NAME, norm1=b.norm1, norm2=b.norm2, mlp=b.mlp, proj=b.attn.proj, qkv=b.attn.qkv,
                        **attention_parts(b.attn, block))
    if slots == ["layers"]:
        model.layers = view.stages
    else:
        for slot, stage in zip(slots, view.stages):
            setattr(model, slot, stage)
    return view
