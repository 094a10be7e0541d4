"""The whole model's backbone calls: found by a probe that leaves the model as it was, run one by
one at their shapes for timing, and timed beside the whole model."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsevit_sdk import build_model
from sparsevit_sdk.profiler.forward import ModelForward, RestOfModel, backbone_calls, measure_rest
from sparsevit_sdk.profiler.timing import num_threads

SHAPE = (1, 3, 112, 112)
HALF = (1, 3, 56, 56)


class TwoScales(nn.Module):
    """swin_micro at full and half size; ``fail`` breaks the forward after the first call."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.backbone = build_model("swin_micro")
        self.fail = fail

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        full = self.backbone(x)[-1]
        if self.fail:
            raise RuntimeError("a head that breaks")
        return [full, self.backbone(F.interpolate(x, scale_factor=0.5))[-1]]


@pytest.mark.parametrize("fail", [False, True])
def test_the_probe_leaves_the_backbone_as_it_was(fail):
    model = TwoScales(fail).eval()
    forward = ModelForward(model)
    if fail:
        with pytest.raises(ValueError, match="could not run the model as model"):
            forward.probe(torch.randn(SHAPE))
    else:
        assert forward.probe(torch.randn(SHAPE)) == (SHAPE, HALF)
    assert "forward_blocks" not in vars(model.backbone.stages[0])  # the class's method again
    assert model.backbone.stages[0].forward_blocks.__func__ is type(model.backbone.stages[0]).forward_blocks


def test_backbone_calls_runs_the_backbone_once_per_call_at_its_shape():
    backbone = build_model("swin_micro").eval()
    seen: list[tuple[int, ...]] = []
    backbone.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    run = backbone_calls(backbone, [SHAPE, HALF, SHAPE], torch.randn(SHAPE))
    seen.clear()
    with torch.no_grad():
        run()
    assert seen == [SHAPE, HALF, SHAPE]


def test_measure_rest_times_the_whole_model_beside_each_of_its_calls():
    model = TwoScales().eval()
    with num_threads(1), torch.no_grad():
        rest = measure_rest(ModelForward(model), SHAPE, clock="cpu", budget_s=0.0, pairs=(2, 2))
    assert (rest.source, rest.calls, rest.shapes) == ("measured", 2, (SHAPE, HALF))
    assert rest.ms >= 0 and rest.whole_ms > 0 and rest.backbone_ms > 0
    assert "in 2 calls (1x3x112x112, 1x3x56x56), 2 paired calls" in rest.note
    assert measure_rest(ModelForward(model.backbone), SHAPE) == RestOfModel()
