"""sparsify(): timm and torchvision Swin at sparsity 0 equal the originals."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import SearchSpace, SparseSwin, sparsify

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")


def _tiny_timm():
    return timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=112, embed_dim=32,
        depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), num_classes=5,
    ).eval()


def _tiny_torchvision():
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2, 2, 2],
                           num_heads=[1, 2, 4, 8], window_size=[7, 7], num_classes=5).eval()


def test_timm_swin_t_is_exact_at_sparsity_zero():
    src = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval()
    model = sparsify(src)
    assert model.signature == "swin-e96-d2.2.6.2-h3.6.12.24-w7-p4"
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(model.forward_features(x), src.forward_features(x), rtol=0, atol=1e-5)
        logits = model.forward_head(model.forward_features(x))
        torch.testing.assert_close(logits, src(x), rtol=0, atol=1e-5)


def test_torchvision_swin_t_is_exact_at_sparsity_zero():
    src = torchvision.models.swin_t().eval()
    model = sparsify(src)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        ref = src.norm(src.features(x))
        torch.testing.assert_close(model.forward_features(x), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), src(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(100, 60), (232, 296)])
def test_torchvision_padding_for_odd_sizes(size):
    """Sizes that are not multiples of the window pad exactly as torchvision does."""
    src = _tiny_torchvision()
    model = sparsify(src)
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        torch.testing.assert_close(model.forward_features(x), src.norm(src.features(x)), rtol=0, atol=1e-5)


def test_parameters_are_shared_not_copied():
    src = _tiny_timm()
    model = sparsify(src)
    assert model.stages[2].blocks[1].attn.qkv.weight is src.layers[2].blocks[1].attn.qkv.weight
    assert model.head.weight is src.head.fc.weight


def test_sparsified_timm_model_accepts_configs():
    model = sparsify(_tiny_timm())
    model.set_sparsity(SearchSpace.from_model(model).uniform(0.5))
    with torch.inference_mode():
        assert model.forward_features(torch.randn(1, 3, 112, 112)).shape == (1, 4, 4, 256)


def test_unsupported_models_get_a_type_error():
    with pytest.raises(TypeError, match="supported models"):
        sparsify(torchvision.models.resnet18())
    with pytest.raises(TypeError, match="V2 is not supported"):
        sparsify(torchvision.models.swin_v2_t())


def test_sparsify_is_idempotent():
    model = sparsify(_tiny_torchvision())
    assert isinstance(model, SparseSwin) and sparsify(model) is model
