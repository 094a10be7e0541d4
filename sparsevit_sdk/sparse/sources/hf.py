"""Hugging Face transformers Swin V1: ``SwinModel`` and everything built on it.

``SwinBackbone``, ``SwinForImageClassification`` and the segmentation models whose backbone is a
``SwinBackbone`` (Mask2Former, OneFormer, UperNet) all hold a ``SwinModel``; only its encoder is
replaced, so the embeddings (mask tokens, absolute position embeddings), final norm, pooler,
per-stage ``hidden_states_norms`` and the output classes stay Hugging Face's.

Hugging Face pads each block's map to whole windows and then rolls it.  ``SwinModel`` skips the
shift when ``min(H, W)`` is at most one window; ``SwinBackbone`` calls it with
``always_partition=True``, which keeps the shift at every size.  The sparse encoder picks the
matching :class:`~sparsevit_sdk.sparse.windows.Windowing` per call, as the source does.
(transformers' layers also *remember* a dropped shift after one small input; a stage whose shift
is already 0 when converted keeps 0, otherwise the per-call rule above is what runs.)

The model saves as Hugging Face's (``encoder.layers...`` keys, :class:`~.keys.SourceKeys`), and keeps
each stage's sparsity and window score in its config under :data:`CONFIG_KEY` while they are not a
fresh stage's: ``save_pretrained`` writes them to config.json, ``from_pretrained`` reads them into a
plain Hugging Face model, and ``sparsify`` of that model sets them again.
"""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn as nn

from ..guards import set_stage_state, stage_state
from ..swin import SparseSwin
from ..windows import Windowing
from ._adopt import adopt_block, adopt_merge, empty_view, unsupported
from .keys import SourceKeys

NAME = "Hugging Face"
WINDOWING = Windowing(no_shift="min-side")
ALWAYS_PARTITION = Windowing(no_shift="never")
SUPPORTED = "Hugging Face SwinModel, SwinBackbone, SwinForImageClassification and models that hold them"
CONFIG_KEY = "sparsevit_stages"  # config attribute: one guards.stage_state() per stage; absent when all are fresh


def require_transformers() -> ModuleType:
    """``transformers``, or an ImportError that says how to install it (it is an optional extra)."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError("Hugging Face Swin models need transformers, an optional extra of sparsevit-sdk: "
                          "pip install -c constraints.txt 'sparsevit-sdk[transformers]'") from err
    return transformers


def matches(model: nn.Module) -> bool:
    return type(model).__name__ == "SwinModel" and type(model).__module__.startswith("transformers.")


class HFPatchEmbed(nn.Module):
    """Hugging Face ``SwinEmbeddings`` as an images → NHWC tokens module (the sparse view's stem)."""

    def __init__(self, embeddings: nn.Module) -> None:
        super().__init__()
        self.embeddings = embeddings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, (H, W) = self.embeddings(x)  # (B, H*W, C)
        return tokens.view(tokens.shape[0], H, W, tokens.shape[-1])


class SparseSwinEncoder(nn.Module):
    """Drop-in for Hugging Face's ``SwinEncoder`` and ``Swinv2Encoder``: the same call and output class
    (``output_class``, e.g. ``SwinEncoderOutput``), sparse stages.

    Hugging Face's stage *i* ends with the merge into stage *i+1*; the sparse stages start with
    it, so "after downsampling" states are the next stage's merge of this stage's blocks.
    ``output_hidden_states_before_downsampling`` shows the states before that merge in
    ``reshaped_hidden_states``, and also in ``hidden_states`` where ``flat_states_before_downsampling``
    (Swin V2 does; V1's ``hidden_states`` stay the merged ones).  A call with ``always_partition=True``
    (Swin V1's backbone) runs the stages with ``always_partition_windowing`` instead of their own.
    Every change of a stage's sparsity or window score is recorded in ``config`` (:meth:`record`).
    """

    def __init__(
        self, stages: nn.Sequential, output_class: type, config, *,
        always_partition_windowing: Windowing | None = None, flat_states_before_downsampling: bool = False,
    ) -> None:
        super().__init__()
        self.stages = stages
        self.output_class = output_class
        self.config = config
        self.always_partition_windowing = always_partition_windowing
        self.flat_states_before_downsampling = flat_states_before_downsampling

    def record(self) -> None:
        """Put the stages' state in ``config`` (where save_pretrained writes it), or take it out when
        every stage is fresh, so a dense model's config.json stays Hugging Face's."""
        states = [stage_state(stage) for stage in self.stages]
        if any(states):
            setattr(self.config, CONFIG_KEY, states)
        else:
            self.config.__dict__.pop(CONFIG_KEY, None)

    def forward(
        self,
        hidden_states: torch.Tensor,
        input_dimensions: tuple[int, int],
        always_partition: bool = False,
        output_hidden_states: bool = False,
        output_hidden_states_before_downsampling: bool = False,
        output_attentions: bool = False,
        return_dict: bool = True,
        **kwargs,
    ):
        if output_attentions:
            raise ValueError("a window-sparse Swin does not return attention weights (it never forms them for "
                             "skipped windows); call it with output_attentions=False")
        windowing = self.always_partition_windowing if always_partition else None
        B, _, C = hidden_states.shape
        x = hidden_states.view(B, *input_dimensions, C)
        states = [(x, x)]  # (flat output, reshaped output) of the stem, then of every stage
        for i, stage in enumerate(self.stages):
            x = before = stage.forward_blocks(x, windowing)
            if i + 1 < len(self.stages):
                x = self.stages[i + 1].downsample(x)
            shown = before if output_hidden_states_before_downsampling else x
            states.append((shown if self.flat_states_before_downsampling else x, shown))
        extra = {}
        if output_hidden_states:
            extra = dict(hidden_states=tuple(flat.flatten(1, 2) for flat, _ in states),
                         reshaped_hidden_states=tuple(shown.permute(0, 3, 1, 2).contiguous() for _, shown in states))
        output = self.output_class(last_hidden_state=x.flatten(1, 2), **extra)
        return output if return_dict else output.to_tuple()  # tuples skip the Nones, as Hugging Face's do


def convert(model: nn.Module) -> SparseSwin:
    """Swap ``model.encoder`` for a :class:`SparseSwinEncoder` (in place) and return the sparse view."""
    config = model.config
    layers = list(model.encoder.layers)
    if not hasattr(layers[0].blocks[0].attention, "q_proj"):
        raise unsupported(NAME, "its attention layout (attention.self.query/key/value) predates transformers 5",
                          "install the transformers version in constraints.txt (pip install -c constraints.txt "
                          "'sparsevit-sdk[transformers]')")
    projection = model.embeddings.patch_embeddings.projection
    windows = []
    for i, layer in enumerate(layers):
        bias = layer.blocks[0].attention.relative_position_bias
        if tuple(bias.window_size) != (layer.blocks[0].window_size,) * 2:
            raise unsupported(NAME, f"stage {i + 1} clamped its window to {layer.blocks[0].window_size} after an "
                                    f"input smaller than its {bias.window_size[0]}-token window (transformers keeps "
                                    "that state)", "reload the model and convert it before running such inputs")
        windows.append(bias.window_size[0])
    view = empty_view(
        NAME,
        dims=[layer.blocks[0].layernorm_before.normalized_shape[0] for layer in layers],
        depths=[len(layer.blocks) for layer in layers],
        num_heads=[layer.blocks[0].attention.num_attention_heads for layer in layers],
        windows=windows,
        shifts=[(int(layer.blocks[1].shift_size),) * 2 if len(layer.blocks) > 1 else (0, 0) for layer in layers],
        patch_embed=HFPatchEmbed(model.embeddings), norm=model.layernorm, in_chans=projection.in_channels,
        patch_size=projection.kernel_size[0], mlp_ratio=float(config.mlp_ratio), qkv_bias=bool(config.qkv_bias),
        windowing=WINDOWING, fused_qkv=False,
    )
    for dst, layer in zip(view.stages[1:], layers):
        adopt_merge(dst.downsample, layer.downsample.norm, layer.downsample.reduction)
    for dst, layer in zip(view.stages, layers):
        for d, b in zip(dst.blocks, layer.blocks):
            a = b.attention
            adopt_block(d, NAME, norm1=b.layernorm_before, norm2=b.layernorm_after, mlp=b.mlp, proj=a.o_proj,
                        table=a.relative_position_bias.relative_position_bias_table,
                        q=a.q_proj, k=a.k_proj, v=a.v_proj)
    output_class = require_transformers().models.swin.modeling_swin.SwinEncoderOutput
    swap_encoder(model, view, output_class, NAME, always_partition_windowing=ALWAYS_PARTITION)
    return view


def swap_encoder(model: nn.Module, view: SparseSwin, output_class: type, library: str, **options) -> None:
    """Put a :class:`SparseSwinEncoder` over ``view``'s stages in ``model.encoder``'s place, saving under
    its keys, with the stage state that ``model.config`` records (``options``: the encoder's)."""
    encoder = SparseSwinEncoder(view.stages, output_class, model.config, **options)
    stages = {f"stages.{i}.": f"layers.{i}." for i in range(len(view.stages))}
    model.encoder = SourceKeys.pair(model.encoder, encoder, stages, library).install(encoder)
    saved = getattr(model.config, CONFIG_KEY, None)
    if saved is not None:
        if not isinstance(saved, list) or len(saved) != len(view.stages) or not all(isinstance(s, dict) for s in saved):
            raise ValueError(f"config.{CONFIG_KEY}: expected one object per stage ({len(view.stages)}), got "
                             f"{saved!r:.200}; remove it from config.json to load the model dense")
        for i, (stage, state) in enumerate(zip(view.stages, saved)):
            set_stage_state(stage, state, f"config.{CONFIG_KEY}[{i}].")
    for stage in view.stages:
        stage.on_change = encoder.record
    encoder.record()
