"""Swin V2 from timm and torchvision: equal to the source at sparsity 0, searchable, and the built-in swinv2_t.

Hugging Face Swin V2 has its own file (``test_convert_hf_v2.py``).  Logit scales are set past the
clamp at 100 on some heads, where cosine attention's logits are large enough that a wrong scale,
clamp or mask moves every output.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn

from sparsevit_sdk import SearchSession, build_model, search_space, set_sparsity, sparse_backbone, sparsify
from sparsevit_sdk.sparse.windows import log_spaced_coords

from .test_convert import SIZES, TINY, _randomize, _through_safetensors

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

def _v2(model: nn.Module, seed: int = 0) -> nn.Module:
    """Randomized weights, and logit scales from 20 to 200 (the kernels clamp at 100, as the sources do)."""
    _randomize(model, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                p.copy_(math.log(20) + math.log(10) * torch.rand(p.shape, generator=g))
    return model


def _timm_v2(window: int, img: int, pretrained: int = 0, **kwargs) -> Callable[[tuple[int, int]], nn.Module]:
    last = pretrained // 2 if pretrained else 0
    return lambda size: _v2(timm.create_model(
        "swinv2_tiny_window8_256", pretrained=False, num_classes=5, window_size=window, img_size=img,
        pretrained_window_sizes=(pretrained, pretrained, pretrained, last), **TINY, **kwargs))


def _tv_v2(window: int) -> Callable[[tuple[int, int]], nn.Module]:
    from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

    return lambda size: _v2(SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=[window] * 2,
        block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2, num_classes=5))


def _logits_and_features(m, x):
    return [m(x), m.forward_features(x)]


def _tv_outputs(m, x):
    return [m(x), m.norm(m.features(x))]


OFF_GRID = [(224, 224), (288, 416), (332, 516)]


CASES = [
    ("timm-window8", _timm_v2(8, 256, strict_img_size=False), [(256, 256), *OFF_GRID], _logits_and_features),
    ("timm-window8-fixed", _timm_v2(8, 256), [(256, 256)], _logits_and_features),
    ("timm-window12", _timm_v2(12, 192, strict_img_size=False), [(192, 192), (384, 384), (288, 416)],
     _logits_and_features),
    ("timm-window16-pretrained12", _timm_v2(16, 256, 12, strict_img_size=False), [(256, 256), (512, 512), (332, 516)],
     _logits_and_features),
    ("timm-window8-always_partition", _timm_v2(8, 256, always_partition=True, strict_img_size=False),
     [(256, 256), (224, 224)], _logits_and_features),
    ("torchvision-window8", _tv_v2(8), [(256, 256), *SIZES[:3]], _tv_outputs),
    ("torchvision-window16", _tv_v2(16), [(256, 256), (512, 512)], _tv_outputs),
]


# sizes of 512 px and more are slow; every case keeps its other sizes without them
GRID = [pytest.param(build, size, outputs, id=f"{name}-{size[0]}x{size[1]}",
                     marks=[pytest.mark.slow] if max(size) >= 512 else [])
        for name, build, sizes, outputs in CASES for size in sizes]


@pytest.mark.parametrize("build, size, outputs", GRID)
def test_converted_v2_equals_its_source_at_sparsity_zero(build, size, outputs, tmp_path):
    src = _through_safetensors(build, size, tmp_path)
    model = sparsify(src)
    assert sparse_backbone(model).block == "v2"
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, got = outputs(src, x), outputs(model, x)
    for e, g in zip(expected, got):
        assert e.abs().max() > 0.1
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)


def test_timm_v2_features_only_and_intermediates():
    src = _timm_v2(16, 256, 12, features_only=True, strict_img_size=False)((256, 256)).eval()
    model = sparsify(src)
    x = torch.randn(1, 3, 320, 288, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        for e, g in zip(src(x), model(x)):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * max(1.0, float(e.abs().max())))


def test_sparsity_reaches_a_converted_v2_and_changes_its_output():
    src = _timm_v2(8, 256)((256, 256)).eval()
    model = sparsify(src)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        dense = model(x)
        set_sparsity(model, search_space(model).uniform(0.5))
        sparse = model(x)
    assert (dense - sparse).abs().max() > 1e-3


def test_position_bias_inputs_match_timm_including_a_pretrained_window():
    """The built-in V2 computes the log-spaced offsets itself; they must be timm's, rescaling included."""
    for window, pretrained in [(8, 0), (12, 0), (16, 0), (16, 12), (24, 12), (8, 6)]:
        attn = timm.models.swin_transformer_v2.WindowAttention(
            32, (window, window), 2, pretrained_window_size=(pretrained, pretrained))
        assert torch.equal(log_spaced_coords(window, pretrained), attn.relative_coords_table), (window, pretrained)


@pytest.mark.slow
def test_builtin_swinv2_t_has_the_published_shapes_and_matches_timm_with_its_weights():
    """swinv2_t is Swin V2-T: loading timm's swinv2_tiny_window8_256 weights gives timm's features."""
    ours = build_model("swinv2_t")
    assert ours.signature == "swinv2-e96-d2.2.6.2-h3.6.12.24-w8-p4"
    src = _v2(timm.create_model("swinv2_tiny_window8_256", pretrained=False, num_classes=0)).eval()
    twin = sparsify(src)
    state = {k: v for k, v in sparse_backbone(twin).state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in sparse_backbone(twin).parameters())
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if not k.startswith("head")]
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(ours.forward_features(x), src.forward_features(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["swinv2_micro", pytest.param("timm-v2", marks=pytest.mark.slow)])
def test_search_session_runs_on_swin_v2(name):
    model = build_model("swinv2_micro") if name == "swinv2_micro" else sparsify(_timm_v2(8, 256)((256, 256)).eval())
    shape = (1, 3, 256, 256)
    result = SearchSession(model, "cpu", latency_budget=0.8, input_shape=shape, population=4, parents=2,
                           generations=1, progress=False).run()
    assert result.best.signature.startswith("swinv2-") and result.predicted_ms <= result.budget_ms
    report = result.validate("cpu", model=model, repeats=2, warmup=1, rounds=1)
    assert report.dense_ms > 0 and report.sparse_ms > 0
