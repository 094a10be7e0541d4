"""sparse/sources/hf.py beyond the conversion matrix: models that hold a Swin backbone, image classifiers, attention
weights, a missing transformers."""

from __future__ import annotations

import sys

import pytest
import torch

from sparsevit_sdk import (
    SparseSwin,
    search_space,
    set_sparsity,
    sparse_backbone,
    sparsify,
)

from .test_convert import _hf_config, _hf_model, _randomize

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

def _mask2former():
    transformers = pytest.importorskip("transformers")
    backbone = _hf_config(out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone, hidden_dim=32, mask_feature_size=32, feature_size=32, encoder_layers=1,
        decoder_layers=2, num_queries=8, num_labels=3, encoder_feedforward_dim=64, dim_feedforward=64,
        num_attention_heads=2,
    )
    return _randomize(transformers.Mask2FormerForUniversalSegmentation(config)).eval()


def _upernet():
    transformers = pytest.importorskip("transformers")
    backbone = _hf_config(out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.UperNetConfig(backbone_config=backbone, hidden_size=32, auxiliary_channels=32,
                                        num_labels=3)
    return _randomize(transformers.UperNetForSemanticSegmentation(config)).eval()


@pytest.mark.parametrize("build, outputs", [
    (_mask2former, lambda out: [out.masks_queries_logits, out.class_queries_logits]),
    (_upernet, lambda out: [out.logits]),
], ids=["Mask2Former", "UperNet"])
def test_inplace_swaps_the_swin_inside_a_segmentation_model(build, outputs):
    model = build()
    x = torch.randn(1, 3, 256, 352, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = outputs(model(pixel_values=x))
        assert sparsify(model, inplace=True) is model
        assert type(sparse_backbone(model)) is SparseSwin
        got = outputs(model(pixel_values=x))
        set_sparsity(model, search_space(model).uniform(0.5))
        sparse = outputs(model(pixel_values=x))
    for e, g, s in zip(expected, got, sparse):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)
        assert s.shape == e.shape and torch.isfinite(s).all() and not torch.allclose(s, e, atol=1e-4)


def test_hf_image_classifier_gives_the_same_logits():
    transformers = pytest.importorskip("transformers")
    src = _randomize(transformers.SwinForImageClassification(_hf_config(num_labels=5))).eval()
    x = torch.randn(1, 3, 288, 416)
    with torch.inference_mode():
        expected = src(pixel_values=x).logits
        torch.testing.assert_close(sparsify(src)(pixel_values=x).logits, expected, rtol=0, atol=1e-5)


def test_hf_sparse_encoder_refuses_attention_weights():
    model = sparsify(_hf_model(None).eval())
    with pytest.raises(ValueError, match="output_attentions=False"), torch.inference_mode():
        model(torch.randn(1, 3, 224, 224), output_attentions=True)


def test_missing_transformers_says_how_to_install_it(monkeypatch):
    from sparsevit_sdk.sparse.sources.hf import require_transformers

    monkeypatch.setitem(sys.modules, "transformers", None)  # what an environment without it raises
    with pytest.raises(ImportError, match=r"pip install .*sparsevit-sdk\[transformers\]"):
        require_transformers()
