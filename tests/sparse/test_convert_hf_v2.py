"""Hugging Face Swin V2 (Swinv2Model, Swinv2Backbone, Swinv2ForImageClassification): equal to the source at
sparsity 0 on every output, at sizes on and off the window grid, for windows 8, 12 and 16 (pretrained at 12).

Weights are randomized (logit scales from 20 to 200, past the clamp at 100), saved with ``save_pretrained``
and loaded into a fresh model with ``from_pretrained``, as a hub checkpoint is; each comparison goes
through the source's own call.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile

import pytest
import torch
import torch.nn as nn

from sparsevit_sdk import sparse_backbone, sparsify
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.sparse.windows import log_spaced_coords

from .test_convert_timm import _close_to_scale
from .test_convert_v2 import _v2

transformers = pytest.importorskip("transformers")

STAGES = ["stage1", "stage2", "stage3", "stage4"]


# name: (config, expected windows per stage, input sizes); image_size fixes the windows, as in Hugging Face
CONFIGS = {
    # 96x64 makes stage maps of one window or less that Hugging Face still shifts (12x8, 6x4, 3x2)
    "window8": (dict(window_size=8, image_size=256), (8, 8, 8, 8), [(256, 256), (224, 224), (288, 352), (96, 64)]),
    "window12": (dict(window_size=12, image_size=192), (12, 12, 12, 6), [(192, 192), (288, 352)]),
    "window16-pretrained12": (dict(window_size=16, image_size=256, pretrained_window_sizes=[12, 12, 12, 6]),
                              (16, 16, 16, 8), [(256, 256), (288, 352)]),
    # a non-square image_size: Hugging Face clamps the window to the stage's height (4 in stage 4), square
    "window8-image128x256": (dict(window_size=8, image_size=(128, 256)), (8, 8, 8, 4), [(128, 256), (200, 328)]),
}


def _config(name: str, **kwargs):
    config, _, _ = CONFIGS[name]
    return transformers.Swinv2Config(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], **config, **kwargs)


@pytest.fixture(autouse=True)
def _one_thread():
    """These small models run fastest on one thread, above all on a CPU shared with other jobs."""
    with num_threads(1):
        yield


MODELS = {
    "Swinv2Model": lambda name: transformers.Swinv2Model(_config(name)),
    "Swinv2Backbone": lambda name: transformers.Swinv2Backbone(_config(name, out_features=STAGES)),
    "Swinv2ForImageClassification": lambda name: transformers.Swinv2ForImageClassification(
        _config(name, num_labels=5)),
}


@functools.cache
def _source_and_sparse(kind: str, name: str) -> tuple[nn.Module, nn.Module]:
    """A fresh source loaded from a randomized checkpoint (cached: the tests only read them), and sparsify(it)."""
    with tempfile.TemporaryDirectory() as tmp:
        _v2(MODELS[kind](name)).save_pretrained(tmp)  # model.safetensors + config.json, as on the hub
        src = getattr(transformers, kind).from_pretrained(tmp).eval()
    return src, sparsify(src)


def _outputs(kind: str, model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every tensor the source's own call returns, hidden states included."""
    out = model(pixel_values=x, output_hidden_states=True)
    if kind == "Swinv2Backbone":
        return [*out.feature_maps, *out.hidden_states]
    if kind == "Swinv2ForImageClassification":
        return [out.logits, *out.hidden_states, *out.reshaped_hidden_states]
    return [out.last_hidden_state, out.pooler_output, *out.hidden_states, *out.reshaped_hidden_states]


def _assert_equal_outputs(expected: list[torch.Tensor], got: list[torch.Tensor]) -> None:
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert e.abs().max() > 0.1  # a real signal, not zeros compared with zeros
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)


# each model kind runs every config at its first size without -m slow; the other sizes (off the window grid,
# smaller than a window) are marked slow, and each is still checked by Swinv2Model in the quick run
GRID = [pytest.param(kind, name, size, id=f"{kind}-{name}-{size[0]}x{size[1]}",
                     marks=[pytest.mark.slow] if kind != "Swinv2Model" and size != sizes[0] else [])
        for kind in MODELS for name, (_, _, sizes) in CONFIGS.items() for size in sizes]


@pytest.mark.parametrize("kind, name, size", GRID)
def test_converted_hf_v2_equals_its_source_at_sparsity_zero(kind, name, size):
    src, model = _source_and_sparse(kind, name)
    view = sparse_backbone(model)
    assert view.block == "v2" and view.window_size == CONFIGS[name][1]
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        _assert_equal_outputs(_outputs(kind, src, x), _outputs(kind, model, x))


@pytest.mark.parametrize("kind", ["Swinv2Model", "Swinv2Backbone"])
def test_tuple_outputs_match_with_return_dict_false(kind):
    src, model = _source_and_sparse(kind, "window8")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))

    def flat(out):
        return [t for item in out for t in (item if isinstance(item, tuple) else (item,))]

    with torch.inference_mode():
        expected = flat(src(pixel_values=x, output_hidden_states=True, return_dict=False))
        got = flat(model(pixel_values=x, output_hidden_states=True, return_dict=False))
    _assert_equal_outputs(expected, got)


def test_converted_model_shares_the_sources_weights_and_position_inputs():
    src, model = _source_and_sparse("Swinv2ForImageClassification", "window16-pretrained12")
    view = sparse_backbone(model)
    assert type(src.swinv2.encoder).__name__ == "Swinv2Encoder"  # the source itself was left as it was
    source_tensors = {id(p) for p in src.parameters()}
    source_ptrs = {p.data_ptr() for p in src.parameters()}
    assert all(id(p) in source_tensors and p.data_ptr() in source_ptrs for p in view.parameters())
    assert {id(p) for p in src.swinv2.encoder.parameters()} <= {id(p) for p in view.parameters()}
    assert {id(p) for p in model.parameters()} == source_tensors
    for stage, layer, pretrained in zip(view.stages, src.swinv2.encoder.layers, (12, 12, 12, 6)):
        for block, hf in zip(stage.blocks, layer.blocks):
            coords = hf.attention.self.relative_coords_table
            assert block.attn.relative_coords_table is coords  # adopted, not recomputed
            assert block.attn.q is hf.attention.self.query and block.attn.k is hf.attention.self.key
            assert block.attn.logit_scale is hf.attention.self.logit_scale
        # the pretrained window rescales the offsets: they are not the ones of the window the stage runs
        window = stage.window_size
        assert torch.equal(coords, log_spaced_coords(window, pretrained))
        assert not torch.equal(coords, log_spaced_coords(window))


def test_hf_v2_refuses_attention_weights_and_what_it_cannot_reproduce():
    _, model = _source_and_sparse("Swinv2Model", "window8")
    with pytest.raises(ValueError, match="output_attentions=False"), torch.inference_mode():
        model(pixel_values=torch.randn(1, 3, 64, 64), output_attentions=True)
    with pytest.raises(TypeError, match=r"non-square patches \(4, 2\).*int patch_size"):
        sparsify(transformers.Swinv2Model(_config("window8", patch_size=(4, 2))))
    edited = transformers.Swinv2Model(_config("window8"))
    edited.encoder.layers[1].blocks[0].shift_size = 4  # a shifted first block: not a Swin stage
    with pytest.raises(TypeError, match="stage 2 block 1 has the shift 4"):
        sparsify(edited)


def test_shift_mask_is_the_sources_doubled_one():
    """Swinv2SelfAttention adds its -100 mask twice.  A query anti-aligned with its own region's keys and
    aligned with a rolled-in region's (q = -k, regions of +u and -u tokens) at logit scale 100 would
    attend across regions under a single -100, which the converted model must not, and does with -100.

    Here weights across and within regions are comparable at logits near -100, where fp32's spacing is
    8e-6 and the source rounds twice (+ mask, + mask) where the kernel rounds once (+ -200): the maps
    agree to fp32 rounding of their scale, as un-normed maps do in test_convert.
    """
    src = _v2(transformers.Swinv2Model(_config("window8"))).eval()
    first, shifted = src.encoder.layers[0].blocks
    with torch.no_grad():
        for norm in (first.layernorm_before, first.layernorm_after):  # block 1 becomes the identity
            norm.weight.zero_()
            norm.bias.zero_()
        attn = shifted.attention.self
        attn.query.weight.copy_(-attn.key.weight)
        attn.query.bias.zero_()
        attn.logit_scale.fill_(math.log(150.0))
    model = sparsify(src)
    u = torch.randn(16, generator=torch.Generator().manual_seed(3))  # one token of embed_dim channels
    grid = torch.ones(16, 16)
    grid[:4], grid[:, :4] = -1, -1  # the rows and columns the shift rolls in next to the others
    x = (grid[..., None] * u).view(1, 256, 16)
    with torch.inference_mode():
        expected = src.encoder(x, (16, 16), output_hidden_states=True).reshaped_hidden_states
        got = model.encoder(x, (16, 16), output_hidden_states=True).reshaped_hidden_states
        for e, g in zip(expected, got, strict=True):
            _close_to_scale(g, e)
        for stage in sparse_backbone(model).stages:
            stage.windowing = dataclasses.replace(stage.windowing, mask_value=-100.0)
            stage._layouts.clear()
        single = model.encoder(x, (16, 16), output_hidden_states=True).reshaped_hidden_states
    assert (single[1] - expected[1]).abs().max() > 1e-2
