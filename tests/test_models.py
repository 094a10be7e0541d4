"""models.py: the registry of built-in architectures."""

from __future__ import annotations

import logging

import pytest

from sparsevit_sdk import SearchSession, build_model, sparsify
from sparsevit_sdk.models import DEFAULT_INPUT_SHAPE, declared_input_shape, input_shape_for


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match="swin_micro"):
        build_model("resnet50")


# ---------------------------------------------------------------- the input a model declares
def _hf_classifier(image_size=64):
    transformers = pytest.importorskip("transformers")
    config = transformers.SwinConfig(image_size=image_size, patch_size=4, embed_dim=16, depths=[2, 2, 2],
                                     num_heads=[1, 2, 2], window_size=4, num_labels=3)
    return sparsify(transformers.SwinForImageClassification(config).eval())


def _timm(**kwargs):
    timm = pytest.importorskip("timm")
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, embed_dim=32,
                             depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), **kwargs)


def test_each_library_declares_its_input_where_it_has_one():
    torchvision = pytest.importorskip("torchvision")
    assert declared_input_shape(_hf_classifier()) == (1, 3, 64, 64)  # config.image_size, config.num_channels
    assert declared_input_shape(_timm()) == (1, 3, 224, 224)  # pretrained_cfg['input_size']
    assert declared_input_shape(_timm(img_size=288)) == (1, 3, 288, 288)  # built for 288: not the cfg's 224
    assert declared_input_shape(torchvision.models.swin_t()) is None
    assert declared_input_shape(build_model("swin_micro")) is None


def test_the_default_input_is_the_declared_one_and_another_is_named_once(caplog):
    hf, micro = _hf_classifier(), build_model("swin_micro")
    assert input_shape_for(hf) == (1, 3, 64, 64)
    assert input_shape_for(micro) == DEFAULT_INPUT_SHAPE
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.models"):
        assert input_shape_for(hf, (2, 3, 64, 64)) == (2, 3, 64, 64)  # another batch is no other input
        assert input_shape_for(micro, (1, 3, 96, 96)) == (1, 3, 96, 96)  # nothing declared: nothing to differ
        assert not caplog.records
        for _ in range(2):
            assert input_shape_for(hf, [1, 3, 128, 96]) == (1, 3, 128, 96)
    (record,) = caplog.records
    assert "3x128x96" in record.getMessage() and "3x64x64" in record.getMessage()


def test_a_search_session_defaults_to_the_declared_input():
    hf = _hf_classifier()
    session = SearchSession(hf, "cpu", proxy=lambda cfg: 0.0, rest_ms=0.0, progress=False)
    assert session.input_shape == (1, 3, 64, 64)
