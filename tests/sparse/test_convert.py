"""sparsify(): every supported source, in every mode and at any size it accepts, equals itself at sparsity 0.

Source models are small random configs; their weights go through a safetensors file (what the hubs
serve) into a fresh model before conversion, and are scaled up so that every layer (relative position
biases included) moves the outputs.  Each comparison goes through the source's own call.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from sparsevit_sdk import (
    LatencyPredictor,
    SearchSession,
    SparseSwin,
    search_space,
    set_sparsity,
    sparse_backbone,
    sparsify,
)
from sparsevit_sdk.profiler import SweepSettings, profile_model

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

# width 16 (head dim 16, as Swin-T has 32): every window, shift, pad and mask path of the real shapes at a
# quarter of the cost of each linear layer
TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))


TV_TINY = dict(patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=[7, 7])


# 333x517 is refused by timm (its patch embedding needs multiples of 4), so timm gets 332x516
SIZES = [(224, 224), (288, 416), (333, 517), (1024, 768)]


TIMM_SIZES = [(224, 224), (288, 416), (332, 516), (1024, 768)]


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights large enough that a wrong window, shift or mask changes every output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if p.ndim == 1 and name.endswith("weight") else 0.1 * noise)
    return model


def _timm(name: str = "swin_tiny_patch4_window7_224", **kwargs) -> Callable[[tuple[int, int]], nn.Module]:
    return lambda size: timm.create_model(name, pretrained=False, num_classes=5, **TINY, **kwargs)


def _tv(size: tuple[int, int]) -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(**TV_TINY, num_classes=5)


def _hf_config(**kwargs):
    transformers = pytest.importorskip("transformers")
    return transformers.SwinConfig(image_size=224, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8],
                                   window_size=7, **kwargs)


def _hf_model(size):
    return pytest.importorskip("transformers").SwinModel(_hf_config())


def _hf_backbone(size):
    return pytest.importorskip("transformers").SwinBackbone(_hf_config(out_features=["stage1", "stage2", "stage3",
                                                                                     "stage4"]))


def _logits_and_features(m, x):
    return [m(x), m.forward_features(x)]


def _tv_outputs(m, x):
    return [m(x), m.norm(m.features(x))]


def _hf_model_outputs(m, x):
    out = m(x)
    return [out.last_hidden_state, out.pooler_output]


def _hf_backbone_outputs(m, x):
    return list(m(x).feature_maps)


# (id, build(size), sizes, outputs(model, x)); "fixed" builds the timm model for each input size
CASES = [
    ("timm-fixed", lambda size: _timm(img_size=size)(size), TIMM_SIZES, _logits_and_features),
    ("timm-strict_img_size=False", _timm(strict_img_size=False), TIMM_SIZES, _logits_and_features),
    ("timm-dynamic_img_size", _timm(dynamic_img_size=True), TIMM_SIZES, _logits_and_features),
    ("timm-window12", _timm("swin_base_patch4_window12_384", img_size=384, strict_img_size=False), TIMM_SIZES,
     _logits_and_features),
    ("torchvision", _tv, SIZES, _tv_outputs),
    ("hf-SwinModel", _hf_model, SIZES, _hf_model_outputs),
    ("hf-SwinBackbone", _hf_backbone, SIZES, _hf_backbone_outputs),
]


# 1024x768 (the high-resolution case, 20x the pixels of 224) is slow; every library and mode runs at the
# three other sizes, padding and off-grid ones included, without it
GRID = [pytest.param(build, size, outputs, id=f"{name}-{size[0]}x{size[1]}",
                     marks=[pytest.mark.slow] if size == (1024, 768) else [])
        for name, build, sizes, outputs in CASES for size in sizes]


def _through_safetensors(build: Callable, size, tmp: Path) -> nn.Module:
    """A fresh source whose (randomized) weights were saved to and loaded from a safetensors file."""
    if type(build(size)).__module__.startswith("transformers."):
        src = _randomize(build(size))
        src.save_pretrained(tmp)  # model.safetensors + config.json, as on the hub
        return type(src).from_pretrained(tmp).eval()
    path = tmp / "model.safetensors"
    safetensors_torch.save_file(_randomize(build(size)).state_dict(), str(path))
    model = build(size)
    model.load_state_dict(safetensors_torch.load_file(str(path)))
    return model.eval()


@pytest.mark.parametrize("build, size, outputs", GRID)
def test_converted_model_equals_its_source_at_sparsity_zero(build, size, outputs, tmp_path):
    src = _through_safetensors(build, size, tmp_path)
    model = sparsify(src)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, got = outputs(src, x), outputs(model, x)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert e.abs().max() > 0.1  # a real signal, not zeros compared with zeros
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)


def test_source_is_untouched_and_weights_are_shared():
    src = _timm(strict_img_size=False)((224, 224)).eval()
    stages = list(src.layers)
    model = sparsify(src)
    assert list(src.layers) == stages and model is not src  # the source still runs timm's own stages
    view = sparse_backbone(model)
    assert view.stages[2].blocks[1].attn.qkv is src.layers[2].blocks[1].attn.qkv
    assert view.stages[1].downsample.reduction is src.layers[1].downsample.reduction
    assert model.head is src.head and view.patch_embed is src.patch_embed
    with pytest.raises(TypeError, match="no window-sparse Swin"):
        sparse_backbone(src)


def test_sparsity_reaches_a_converted_model_and_changes_its_output():
    src = _randomize(_timm(dynamic_img_size=True)((288, 416))).eval()
    model = sparsify(src)
    x = torch.randn(1, 3, 288, 416)
    space = search_space(model)
    with torch.inference_mode():
        dense = model.forward_features(x)
        set_sparsity(model, space.uniform(0.5))
        sparse = model.forward_features(x)
        set_sparsity(model, space.dense())
        again = model.forward_features(x)
    assert sparse.shape == dense.shape and not torch.allclose(sparse, dense, atol=1e-3)
    torch.testing.assert_close(again, dense, rtol=0, atol=0)


def test_unsupported_models_get_a_type_error_naming_the_feature():
    with pytest.raises(TypeError, match="no supported Swin"):
        sparsify(torchvision.models.resnet18())
    with pytest.raises(TypeError, match=r"non-square window \(7, 14\)"):
        sparsify(_timm(window_size=(7, 14), img_size=448)((448, 448)))
    with pytest.raises(TypeError, match="cannot sparsify a str"):
        sparsify("swin_t")


def test_sparsify_is_idempotent():
    view = sparsify(SparseSwin(**TINY))
    assert sparsify(view) is view
    model = sparsify(_tv(None))
    assert sparsify(model, inplace=True) is model and sparse_backbone(sparsify(model)) is sparse_backbone(model)


def test_converting_leaves_the_global_random_stream_alone():
    src = _tv(None)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    sparsify(src)
    torch.testing.assert_close(torch.rand(3), expected)


# sizes off the window grid at every stage (token maps 32x40 / 32x48 and their halvings)
@pytest.mark.parametrize("build, size", [
    pytest.param(_hf_backbone, (128, 160), id="hf-SwinBackbone"),
    pytest.param(_timm(dynamic_img_size=True), (128, 192), id="timm-off-grid", marks=pytest.mark.slow),
])
def test_search_profiler_and_validation_run_on_converted_models(build, size):
    model = sparsify(_randomize(build(size)).eval())
    shape = (1, 3, *size)
    result = SearchSession(model, "cpu", latency_budget=0.9, input_shape=shape, population=4, parents=2,
                           generations=1, progress=False).run()
    assert result.predicted_ms <= result.budget_ms
    report = result.validate("cpu", model=model, repeats=2, warmup=1, rounds=1)
    assert report.dense_ms > 0 and report.sparse_ms > 0
    assert sparse_backbone(model).block_sparsity == [[0.0] * 2] * 4  # validation restored the model
    rows = profile_model(copy.deepcopy(model), resolutions=[f"{size[0]}x{size[1]}"], grid=(0.0, 0.5),
                         settings=SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=1),
                         progress=False)
    assert set(rows.layer) >= {"patch_embed", "block_pair", "model"}
    assert (rows.signature == sparse_backbone(model).signature).all()
    assert LatencyPredictor.for_hardware("cpu").predict_config(model, shape, result.best) == pytest.approx(
        result.backbone_predicted_ms)
