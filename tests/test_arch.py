"""arch.py, the bottom layer: the signature round-trips, and the geometry it computes is what the kernels run."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import build_model
from sparsevit_sdk.arch import Architecture, format_signature


@pytest.mark.parametrize("name", ["swin_micro", "swin_t", "swin_b"])
def test_signature_round_trips(name):
    model = build_model(name, seed=None)
    arch = Architecture.from_signature(model.signature)
    assert (arch.embed_dim, arch.depths, arch.num_heads, arch.window_size, arch.patch_size) == (
        model.embed_dim, model.depths, model.num_heads, model.window_size, model.patch_size)
    assert format_signature(arch.embed_dim, arch.depths, arch.num_heads, arch.window_size, arch.patch_size) == \
        model.signature


def test_mixed_windows_and_bad_signatures():
    assert Architecture.from_signature("swin-e32-d2.2-h1.2-w7.14-p4").window_size == (7, 14)
    with pytest.raises(ValueError, match="signature"):
        Architecture.from_signature("vit-b16")


@pytest.mark.parametrize("size", [(64, 64), (97, 130), (333, 517)])
def test_stage_geometry_is_what_the_kernels_run(micro, size):
    arch = micro.architecture
    with torch.inference_mode():
        maps = micro(torch.randn(1, 3, *size))
    assert arch.stage_tokens(*size) == [tuple(m.shape[2:]) for m in maps]
    assert arch.windows_total(*size) == [
        stage.layout(*m.shape[2:], m.device).num_windows for stage, m in zip(micro.stages, maps)]


def test_arguments_in_the_old_order_are_refused_naming_the_order():
    from sparsevit_sdk import LatencyPredictor, build_model, for_device, search_space

    model = build_model("swin_micro")
    with pytest.raises(ValueError, match=r"got SparsityConfig.*every call takes \(model, input_shape, \.\.\.\)"):
        LatencyPredictor.load("cpu").predict_config(model, search_space(model).dense(), (1, 3, 64, 64))
    with pytest.raises(TypeError, match=r"expected a model \(torch.nn.Module\), got str 'cpu'; every call takes"):
        for_device("cpu", model, (1, 3, 64, 64))
