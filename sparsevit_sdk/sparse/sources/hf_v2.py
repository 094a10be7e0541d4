"""Hugging Face transformers Swin V2: ``Swinv2Model``, ``Swinv2Backbone`` and everything built on them.

``Swinv2ForImageClassification`` and ``Swinv2ForMaskedImageModeling`` hold a ``Swinv2Model``;
segmentation models (UperNet, ...) configured with a Swin V2 backbone hold a ``Swinv2Backbone``.
Only the encoder is replaced (by the :class:`~.hf.SparseSwinEncoder` that serves V1 too), so the
embeddings, final norm, pooler and output classes stay Hugging Face's; it saves and loads as V1's does
(Hugging Face's keys, the stage state in the config).

Unlike V1, a ``Swinv2Layer`` fixes its window and shift when it is built, from ``config.image_size``
(a window larger than the stage's map is clamped to it, and its shift dropped); every later call
pads the map to whole windows, then rolls it, and never drops the shift again.  The converter
reads those frozen values from the blocks (the window is square: Hugging Face keeps the clamped
height) and adopts each block's own ``relative_coords_table``, so a model fine-tuned at a larger
window than it was pretrained at (``pretrained_window_sizes``) keeps its rescaled position inputs
by construction.
"""

from __future__ import annotations

import torch.nn as nn

from ..swin import SparseSwin
from ..windows import Windowing
from ._adopt import adopt_block, adopt_merge, empty_view, unsupported
from .hf import HFPatchEmbed, require_transformers, swap_encoder

NAME = "Hugging Face V2"
# Swinv2SelfAttention.forward adds its -100 shift mask to the logits twice (once while reshaping them per
# window, once more on the next line), so what it applies is -200, and so must the kernel.  Cosine
# logits at a trained scale (up to 100) span [-100, 116], so -100 is not a hard mask: a query opposed
# to its own region's keys (logits near -100) and aligned with a rolled-in region's (near +100) would
# attend across regions under -100, and does not under the source's -200.
WINDOWING = Windowing(roll_then_pad=False, no_shift="never", mask_value=-200.0)
SUPPORTED = "Hugging Face Swinv2Model, Swinv2Backbone, Swinv2ForImageClassification and models that hold them"
CLASSES = ("Swinv2Model", "Swinv2Backbone")  # the ones holding the embeddings and encoder directly


def matches(model: nn.Module) -> bool:
    return type(model).__name__ in CLASSES and type(model).__module__.startswith("transformers.")


def _stage_geometry(layer: nn.Module, stage: int) -> tuple[int, tuple[int, int]]:
    """(window, shift) that every block of Hugging Face stage ``stage`` was built with, or a TypeError
    where its blocks do not alternate regular and half-window-shifted square windows of one size."""
    blocks = list(layer.blocks)
    window = int(blocks[0].window_size)
    shift = int(blocks[1].shift_size) if len(blocks) > 1 else 0
    for i, b in enumerate(blocks):
        attn_window = tuple(int(w) for w in b.attention.self.window_size)
        if int(b.window_size) != window or attn_window != (window, window):
            raise unsupported(NAME, f"stage {stage + 1} block {i + 1} has the window {attn_window} (block 1: "
                                    f"{window}); the sparse kernels run one square window per stage",
                              "build the model from its config rather than editing its blocks")
        if int(b.shift_size) != (shift if i % 2 else 0):
            raise unsupported(NAME, f"stage {stage + 1} block {i + 1} has the shift {int(b.shift_size)}; the "
                                    f"sparse kernels alternate unshifted and {shift}-token shifted blocks",
                              "build the model from its config rather than editing its blocks")
    return window, (shift, shift)


def convert(model: nn.Module) -> SparseSwin:
    """Swap ``model.encoder`` for a :class:`~.hf.SparseSwinEncoder` (in place) and return the sparse view."""
    config = model.config
    layers = list(model.encoder.layers)
    first = layers[0].blocks[0].attention
    if not all(hasattr(first.self, part) for part in
               ("query", "key", "value", "logit_scale", "continuous_position_bias_mlp", "relative_coords_table")):
        raise unsupported(NAME, "its attention layout is not attention.self.query/key/value with a logit_scale, "
                                "continuous_position_bias_mlp and relative_coords_table",
                          "install the transformers version in constraints.txt (pip install -c constraints.txt "
                          "'sparsevit-sdk[transformers]')")
    projection = model.embeddings.patch_embeddings.projection
    if projection.kernel_size[0] != projection.kernel_size[1]:
        raise unsupported(NAME, f"non-square patches {tuple(projection.kernel_size)}",
                          "build the model with an int patch_size")
    geometry = [_stage_geometry(layer, i) for i, layer in enumerate(layers)]
    view = empty_view(
        NAME,
        dims=[layer.blocks[0].layernorm_before.normalized_shape[0] for layer in layers],
        depths=[len(layer.blocks) for layer in layers],
        num_heads=[layer.blocks[0].attention.self.num_attention_heads for layer in layers],
        windows=[window for window, _ in geometry], shifts=[shift for _, shift in geometry],
        patch_embed=HFPatchEmbed(model.embeddings), norm=getattr(model, "layernorm", None),
        in_chans=projection.in_channels, patch_size=projection.kernel_size[0], mlp_ratio=float(config.mlp_ratio),
        qkv_bias=first.self.query.bias is not None, windowing=WINDOWING, fused_qkv=False, block="v2",
    )
    for dst, layer in zip(view.stages[1:], layers):  # Hugging Face merges at the end of a stage, we at the start
        adopt_merge(dst.downsample, layer.downsample.norm, layer.downsample.reduction)
    for dst, layer in zip(view.stages, layers):
        for d, b in zip(dst.blocks, layer.blocks):
            a = b.attention.self
            # layernorm_before is applied to the attention output (post-norm), i.e. it is the view's norm1;
            # the MLP is intermediate (dense, activation) then output (dense, dropout), shared, not copied
            adopt_block(d, NAME, norm1=b.layernorm_before, norm2=b.layernorm_after,
                        mlp=nn.Sequential(b.intermediate, b.output), proj=b.attention.output.dense,
                        q=a.query, k=a.key, v=a.value, logit_scale=a.logit_scale,
                        cpb_mlp=a.continuous_position_bias_mlp, coords=a.relative_coords_table)
    output_class = require_transformers().models.swinv2.modeling_swinv2.Swinv2EncoderOutput
    swap_encoder(model, view, output_class, NAME, flat_states_before_downsampling=True)
    return view
