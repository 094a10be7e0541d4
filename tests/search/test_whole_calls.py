"""A whole model that calls its backbone more than once, or at another shape than its input (two
scales, an image and its mirror in one doubled batch, two passes, a resize): every call counted
with its own shape and priced there, the rest measured beside those calls, and forwards no one
latency fits refused naming the fix."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsevit_sdk import LatencyPredictor, SearchSession, build_model, for_device, search_space
from sparsevit_sdk.accuracy import AgreementProxy
from sparsevit_sdk.demo import probe_images
from sparsevit_sdk.predictor.rest import rest_key
from sparsevit_sdk.profiler.forward import ModelForward, RestOfModel, describe_calls
from sparsevit_sdk.profiler.timing import time_callable
from sparsevit_sdk.search.whole import predict_calls, rest_of_model

SHAPE = (1, 3, 112, 112)
HALF = (1, 3, 56, 56)
SMALL = dict(population=6, parents=2, generations=1, progress=False, latency_budget=0.95)


class Wrapped(nn.Module):
    """swin_micro and a 1x1 classifier, run on ``x`` as a segmenter's inference trick ``mode`` says."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.backbone = build_model("swin_micro")
        self.classify = nn.Conv2d(self.backbone.dims[0], 4, 1)
        self.mode = mode

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.backbone(x)[0])  # (B, 4, H/4, W/4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "multi_scale":  # full and half size, averaged at full size
            full = self.logits(x)
            half = self.logits(F.interpolate(x, scale_factor=0.5, mode="bilinear"))
            return (full + F.interpolate(half, size=full.shape[-2:], mode="bilinear")) / 2
        if self.mode == "flip":  # the image and its mirror in one doubled batch
            y = self.logits(torch.cat([x, x.flip(-1)]))
            return (y[: len(x)] + y[len(x):].flip(-1)) / 2
        if self.mode == "twice":  # a second pass at the same size
            return self.logits(x) + self.logits(x)
        if self.mode == "half":  # resized before the backbone
            return self.logits(F.interpolate(x, scale_factor=0.5))
        raise AssertionError(self.mode)


CALLS = {"multi_scale": (SHAPE, HALF), "flip": ((2, 3, 112, 112),), "twice": (SHAPE, SHAPE), "half": (HALF,)}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return probe_images((1, 3, 64, 64), num_images=2)[0]


@pytest.mark.parametrize(("mode", "shape", "calls"), [
    *((mode, SHAPE, calls) for mode, calls in CALLS.items()),
    ("multi_scale", (2, 3, 112, 96), ((2, 3, 112, 96), (2, 3, 56, 48))),
    ("flip", (3, 3, 96, 112), ((6, 3, 96, 112),)),
])
def test_every_backbone_call_is_counted_with_its_own_shape(mode, shape, calls):
    assert ModelForward(Wrapped(mode).eval()).probe(torch.randn(shape)) == calls


@pytest.mark.parametrize("mode", ["multi_scale", "flip", "twice"])
def test_the_search_prices_each_call_at_its_shape(mode, images):
    model = Wrapped(mode).eval()
    predictor = LatencyPredictor.for_hardware("cpu")
    result = SearchSession(model, predictor, input_shape=SHAPE, rest_ms=0.5,
                           proxy=AgreementProxy(model, images, name="agreement"), **SMALL).run()
    calls = CALLS[mode]
    assert (result.rest.shapes, result.rest.calls) == (calls, len(calls))
    assert describe_calls(calls) in result.rest.note

    def priced(cfg) -> float:
        return sum(predictor.predict_config(model.backbone, shape, cfg) for shape in calls)

    dense = priced(search_space(model.backbone).dense())
    assert result.dense_predicted_ms == pytest.approx(dense + 0.5)
    assert result.backbone_dense_predicted_ms == pytest.approx(dense)
    assert result.predicted_ms == pytest.approx(priced(result.best) + 0.5)


def test_the_rest_record_keeps_its_call_shapes_and_older_records_load_as_calls_at_the_input():
    rest = RestOfModel(ms=1.5, calls=2, whole_ms=20.0, backbone_ms=17.0, source="measured", note="n",
                       shapes=(SHAPE, HALF))
    again = RestOfModel.from_dict(json.loads(json.dumps(rest.to_dict())))
    assert again == rest and again.call_shapes((1, 3, 224, 224)) == (SHAPE, HALF)
    older = {"ms": 1.5, "calls": 2, "whole_ms": 20.0, "backbone_ms": 8.5, "source": "measured", "note": ""}
    assert RestOfModel.from_dict(older).call_shapes(SHAPE) == (SHAPE, SHAPE)
    with pytest.raises(ValueError, match="a shape per call"):
        RestOfModel.from_dict({**rest.to_dict(), "calls": 3})


def test_a_profiled_rest_takes_off_each_backbone_call_at_its_own_shape():
    """A profile timed the whole model and the dense backbone at its input; the half-size call
    of a multi-scale forward is the predictor's, not a second full-size call."""
    model = Wrapped("multi_scale").eval()
    forward, space = ModelForward(model), search_space(model.backbone)
    shipped = LatencyPredictor.load("cpu")  # as if fitted on another CPU: the search takes its profile's rest
    foreign = dict(shipped.learned_.fingerprint, fingerprint_id="other", name="Another CPU")
    base = LatencyPredictor.from_dict({**shipped.to_dict(), "fingerprint": foreign})
    half = base.predict_config(model.backbone, HALF, space.dense())
    key = rest_key(forward.key(), SHAPE, base.learned_.dtype, base.learned_.runtime)
    full, whole = 10.0, 10.0 + half + 2.0  # what the profile measured; the old accounting clamped the rest to 0
    record = {"ms": max(0.0, whole - 2 * full), "calls": 2, "whole_ms": whole, "backbone_ms": full}
    predictor = LatencyPredictor.from_dict({**base.to_dict(), "rest": {key: record}})
    rest = rest_of_model(forward, predictor, space, SHAPE)
    assert (rest.source, rest.shapes) == ("measured", (SHAPE, HALF)) and "when it was profiled" in rest.note
    assert rest.ms == pytest.approx(2.0) and rest.backbone_ms == pytest.approx(full + half)
    changed = Wrapped("half").eval()  # the same parameters and class: the same key, but one call now
    assert ModelForward(changed).key() == forward.key()
    with pytest.raises(ValueError, match=r"1 call \(1x3x56x56\) here, but 2 time\(s\) when .* profile it again"):
        rest_of_model(ModelForward(changed), predictor, space, SHAPE)


class Alternates(Wrapped):
    """A random-scale augmentation left on: each run at another size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.runs = getattr(self, "runs", 0) + 1
        return self.logits(F.interpolate(x, scale_factor=0.5 if self.runs % 2 else 0.75))


class FirstStage(Wrapped):
    """Features from the first stage alone: a part of a backbone call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.stages[0](self.backbone.patch_embed(x))


class Video(Wrapped):
    """Frames stacked on a time axis: the backbone gets no (B, C, H, W) batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(torch.stack([x, x], dim=2))


@pytest.mark.parametrize(("model", "message"), [
    (Alternates("half"), r"backbone at 1x3x56x56, then at 1x3x84x84, on the same 1x3x112x112 input: .* pass "
                         r"call= a fixed forward"),
    (FirstStage("half"), r"runs the first stage of its sparse Swin 1 time\(s\) and its last block 0 time\(s\): "
                         r".*pass call= that runs the backbone through"),
    (Video("half"), r"could not run the model as model\(x\) on a \(1, 3, 112, 112\) input .*pass call="),
])
def test_forwards_no_one_latency_fits_are_refused_naming_the_shapes_and_the_fix(model, message, images):
    with pytest.raises(ValueError, match=message):
        SearchSession(model.eval(), "cpu", input_shape=SHAPE, rest_ms=0.5,
                      proxy=AgreementProxy(model.backbone, images, name="agreement"), **SMALL)


@pytest.mark.slow
def test_a_multi_scale_forward_is_predicted_closer_than_as_two_full_size_calls():
    """With a predictor measured here: the whole model timed directly, against the rest measured
    beside each call plus the calls priced at their shapes (new), and against two full-size calls
    plus what is left of the whole beyond them, never below 0 (the accounting before)."""
    shape = (1, 3, 224, 224)
    local = for_device(build_model("swin_micro"), shape, "cpu", cache=False, progress=False)
    model = Wrapped("multi_scale").eval()
    forward, space = ModelForward(model), search_space(model.backbone)
    rest = rest_of_model(forward, local, space, shape)
    assert (rest.source, rest.shapes) == ("measured", (shape, (1, 3, 112, 112)))
    dense = space.dense()
    new = rest.end_to_end(float(predict_calls(local, model.backbone, rest, shape, [dense])[0]))
    x = torch.randn(shape)
    with torch.no_grad():
        whole = time_callable(lambda: forward(x), warmup=2, repeats=10, clock="cpu").min_ms
        full = time_callable(lambda: model.backbone(x), warmup=2, repeats=10, clock="cpu").min_ms
    before = 2 * local.predict_config(model.backbone, shape, dense) + max(0.0, whole - 2 * full)
    assert abs(new / whole - 1) < abs(before / whole - 1)


def test_validation_times_the_backbone_as_the_model_calls_it(images):
    model = Wrapped("flip").eval()
    predictor = LatencyPredictor.for_hardware("cpu")
    result = SearchSession(model, predictor, input_shape=SHAPE, rest_ms=0.5,
                           proxy=AgreementProxy(model, images, name="agreement"), **SMALL).run()
    seen: list[tuple[int, ...]] = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    report = result.validate("cpu", repeats=1, warmup=0, rounds=1)
    assert set(seen) == {CALLS["flip"][0]}  # the doubled batch, never the input's
    assert report.whole and report.backbone_dense_ms > 0 and report.backbone_sparse_ms > 0
    dense = predictor.predict_config(model.backbone, CALLS["flip"][0], search_space(model.backbone).dense())
    assert report.backbone_dense_predicted_ms == pytest.approx(dense)
