"""sparse/sources/timm.py beyond the conversion matrix: forward_intermediates, features_only, state-dict keys."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import (
    sparsify,
)

from .test_convert import TINY, _randomize, _timm

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

def _close_to_scale(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Raw (un-normed) stage maps grow with depth: 1e-5 of their largest value, i.e. fp32 rounding."""
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * max(1.0, float(expected.abs().max())))


@pytest.mark.parametrize("size", [(224, 224), (288, 416), (1024, 768)])
def test_timm_forward_intermediates_and_features_only(size):
    src = _randomize(_timm(strict_img_size=False)(size)).eval()
    model = sparsify(src)
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        final, maps = src.forward_intermediates(x, norm=True)
        final_s, maps_s = model.forward_intermediates(x, norm=True)
        torch.testing.assert_close(final_s, final, rtol=0, atol=1e-5)
        for e, g in zip(maps, maps_s):
            _close_to_scale(g, e)
        feats = _randomize(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, features_only=True,
                                             out_indices=(1, 2, 3), strict_img_size=False, **TINY)).eval()
        expected = feats(x)
        got = sparsify(feats)(x)
    assert [t.shape for t in got] == [t.shape for t in expected] and len(got) == 3
    for e, g in zip(expected, got):
        _close_to_scale(g, e)


def test_timm_state_dict_keys_survive_so_checkpoints_load_after_sparsify(tmp_path):
    src = _randomize(_timm(strict_img_size=False)((224, 224))).eval()
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file(src.state_dict(), str(path))
    model = sparsify(_timm(strict_img_size=False)((224, 224)).eval())
    assert set(model.state_dict()) == set(src.state_dict())
    model.load_state_dict(safetensors_torch.load_file(str(path)))
    x = torch.randn(1, 3, 288, 416)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), src(x), rtol=0, atol=1e-5)
