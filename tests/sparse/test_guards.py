"""sparse/guards.py: inputs the kernels cannot take, and torch.jit.script, are refused by name."""

from __future__ import annotations

import pytest

from sparsevit_sdk import build_model


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_inputs_the_kernels_cannot_take_are_named_and_scripting_is_refused():
    import torch

    timm = pytest.importorskip("timm")
    from sparsevit_sdk import sparsify

    model = build_model("swin_micro").eval()
    with pytest.raises(ValueError, match=r"empty input \(1, 3, 0, 224\)"):
        model(torch.randn(1, 3, 0, 224))
    with pytest.raises(TypeError, match="the input is torch.float32 and the model's weights are torch.bfloat16"):
        build_model("swin_micro").to(torch.bfloat16)(torch.randn(1, 3, 112, 112))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts on its own: no error
        assert model(torch.randn(1, 3, 112, 112))[0].dtype == torch.bfloat16
    converted = sparsify(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, embed_dim=32,
                                           depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)))
    for scripted in (build_model("swin_micro"), converted):
        with pytest.raises(TypeError, match="cannot be compiled by torch.jit.script .* use torch.compile"):
            torch.jit.script(scripted)
