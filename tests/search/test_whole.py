"""Latency of the user's whole model: the rest beyond the backbone, budgets of the model or the
backbone, the Amdahl refusal, end-to-end validation, and models the SDK cannot time."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from sparsevit_sdk import (
    LatencyPredictor,
    SearchResult,
    SearchSession,
    build_model,
    for_device,
    search_space,
    sparsify,
)
from sparsevit_sdk.accuracy import AgreementProxy
from sparsevit_sdk.demo import probe_images
from sparsevit_sdk.profiler.forward import ModelForward, RestOfModel
from sparsevit_sdk.profiler.timing import time_callable
from sparsevit_sdk.search.whole import rest_of_model

SHAPE = (1, 3, 112, 112)


SMALL = dict(population=6, parents=2, generations=1, progress=False, latency_budget=0.9)


class Segmenter(nn.Module):
    """A backbone, a 1x1 classifier, and ``work`` fixed 192x192 matmuls: a head of known cost."""

    def __init__(self, work: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.backbone = build_model("swin_micro", seed=seed)
        self.classify = nn.Conv2d(self.backbone.dims[0], 4, 1)
        self.register_buffer("a", torch.randn(192, 192, generator=torch.Generator().manual_seed(0)) / 192)
        self.work = work

    def head(self) -> torch.Tensor:
        return torch.stack([(self.a @ self.a).sum() for _ in range(self.work)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.classify(self.backbone(x)[0])
        return y + 0 * self.head().sum() if self.work else y


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A predictor calibrated on this CPU for swin_micro at SHAPE (not cached)."""
    return for_device(build_model("swin_micro"), SHAPE, "cpu", cache=False, progress=False)


@pytest.fixture(scope="module")
def proxy_images():
    return probe_images((1, 3, 64, 64), num_images=2)[0]


def proxy(model: nn.Module, images: torch.Tensor) -> AgreementProxy:
    return AgreementProxy(model, images, name="agreement")


@pytest.mark.slow
def test_the_rest_is_measured_beside_the_backbone_and_added_to_every_prediction(local, proxy_images):
    model = Segmenter(work=60).eval()
    head = time_callable(model.head, warmup=2, repeats=10, clock="cpu").p10_ms
    session = SearchSession(model, local, input_shape=SHAPE, proxy=proxy(model, proxy_images),
                            **{**SMALL, "latency_budget": 0.97})  # the head is half the model: 0.9 is out of reach
    rest = session.rest
    assert (rest.source, rest.calls) == ("measured", 1) and "paired calls" in rest.note
    assert 0.6 * head < rest.ms < 1.6 * head  # the head's own cost, found inside the whole model
    result = session.run()
    ran = session.predictor  # the calibration, re-levelled where the dense model ran > 5 % off it (Target.rechecked)
    assert ran.learned_.calibration.get("level", 1.0) == pytest.approx(
        ran.predict_config(model.backbone, SHAPE, session.space.dense())
        / local.predict_config(model.backbone, SHAPE, session.space.dense()))
    dense = ran.predict_config(model.backbone, SHAPE, session.space.dense())
    assert result.dense_predicted_ms == pytest.approx(dense + rest.ms)
    assert result.predicted_ms == pytest.approx(ran.predict_config(model.backbone, SHAPE, result.best) + rest.ms)
    assert result.backbone_dense_predicted_ms == pytest.approx(dense)
    assert result.history["predicted_ms"].min() >= rest.ms
    bare = SearchSession(Segmenter(work=0).eval(), local, input_shape=SHAPE, proxy=proxy(model, proxy_images), **SMALL)
    assert bare.rest.ms < 0.5 * head  # a 1x1 conv: little beyond the backbone
    backbone_only = SearchSession(model.backbone, local, input_shape=SHAPE, proxy=proxy(model, proxy_images), **SMALL)
    assert backbone_only.rest == RestOfModel()


@pytest.mark.parametrize("scope", ["model", "backbone"])
def test_the_budget_is_of_the_whole_model_unless_the_backbone_is_asked_for(scope, proxy_images):
    model = Segmenter().eval()
    predictor = LatencyPredictor.for_hardware("cpu")
    space = search_space(model.backbone)
    dense = predictor.predict_config(model.backbone, SHAPE, space.dense())
    rest = 0.1 * dense
    result = SearchSession(model, predictor, budget_of=scope, rest_ms=rest, input_shape=SHAPE,
                           proxy=proxy(model, proxy_images), **{**SMALL, "latency_budget": 0.95}).run()
    assert result.rest.source == "given" and result.rest.ms == rest
    whole_budget = 0.95 * (dense + rest) if scope == "model" else rest + 0.95 * dense
    assert result.budget_ms == pytest.approx(whole_budget)
    assert result.predicted_ms <= result.budget_ms + 1e-9
    assert result.predicted_ms == pytest.approx(predictor.predict_config(model.backbone, SHAPE, result.best) + rest)
    assert result.settings["budget_of"] == scope
    feasible = result.history[result.history["feasible"]]
    assert (feasible["predicted_ms"] <= result.budget_ms + 1e-9).all()
    text = result.summary()
    assert "model(x) end to end" in text and "the rest" in text
    assert ("for the backbone" in text) == (scope == "backbone")


def test_an_unreachable_whole_model_budget_is_refused_with_the_amdahl_bound(proxy_images):
    model = Segmenter().eval()
    predictor = LatencyPredictor.for_hardware("cpu")
    dense = predictor.predict_config(model.backbone, SHAPE, search_space(model.backbone).dense())
    with pytest.raises(ValueError, match=r"the backbone is 5% of this model's .* the most any config can reach is "
                                         r"1\.0\dx .* took no time would give 1\.05x.*budget_of='backbone'"):
        SearchSession(model, predictor, rest_ms=20 * dense, input_shape=SHAPE, proxy=proxy(model, proxy_images),
                      **{**SMALL, "latency_budget": 0.7})
    session = SearchSession(model, predictor, budget_of="backbone", rest_ms=20 * dense, input_shape=SHAPE,
                            proxy=proxy(model, proxy_images), **SMALL)
    assert session.run().backbone_predicted_ms <= 0.9 * dense + 1e-9


def test_an_estimated_target_estimates_the_rest_and_says_so():
    model = Segmenter(work=60).eval()
    rest = rest_of_model(ModelForward(model), LatencyPredictor.for_hardware("a100"),
                         search_space(model.backbone), (1, 3, 224, 224))
    assert rest.source == "estimated" and rest.note.startswith("ESTIMATED") and "a100" in rest.note
    assert rest.ms < rest.whole_ms - rest.backbone_ms  # an A100 runs the head faster than this CPU does


@pytest.mark.slow
def test_result_round_trip_plot_and_resume_keep_the_rest(tmp_path, local, proxy_images):
    model = Segmenter(work=20).eval()
    score = proxy(model, proxy_images)
    checkpoint = tmp_path / "search.ckpt"
    # a 0.95 budget: the rest is measured live, and at 0.9 a loaded machine's rest left no config within reach
    result = SearchSession(model, local, input_shape=SHAPE, proxy=score, checkpoint=checkpoint,
                           **{**SMALL, "generations": 2, "latency_budget": 0.95}).run()
    loaded = SearchResult.load(result.save(tmp_path / "r.json"), model=model)
    assert loaded.to_dict() == result.to_dict() and loaded.rest == result.rest and loaded.call == "model(x)"
    fig = result.plot(tmp_path / "pareto.png")
    assert "end to end" in fig.axes[0].get_xlabel()
    # the rest is the checkpoint's, not measured again (which would change every latency and be refused)
    resumed = SearchSession.resume(checkpoint, model, hw=local, proxy=score, progress=False).run()
    assert resumed.rest == result.rest
    assert resumed.history.equals(result.history)
    # the same finalists, chosen between by what they measure now (see test_finalists)
    finalists = [f.ratios for f in result.measured.finalists]
    assert [f.ratios for f in resumed.measured.finalists] == finalists and resumed.best.ratios in finalists


def test_validate_times_a_timm_classifier_end_to_end_beside_its_backbone(proxy_images):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = sparsify(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5,
                                       embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                                       dynamic_img_size=True)).eval()
    shape = (1, 3, 224, 224)
    result = SearchSession(model, "cpu", input_shape=shape, rest_ms=0.5, proxy=proxy(model, proxy_images),
                           **SMALL).run()
    report = result.validate("cpu", repeats=2, warmup=1, rounds=1)
    assert report.whole and report.call == "model(x)" and report.threads == 1
    assert report.dense_ms > 0 and report.backbone_dense_ms > 0 and report.backbone_sparse_ms > 0
    assert report.backbone_dense_predicted_ms == pytest.approx(result.dense_predicted_ms - 0.5)
    assert "model(x) end to end" in str(report) and "measured  backbone" in str(report)
    with pytest.raises(ValueError, match="pass the same call="):
        result.validate("cpu", call="forward_features")


def test_validate_calls_a_hugging_face_model_with_pixel_values(proxy_images):
    transformers = pytest.importorskip("transformers")
    config = transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2], num_heads=[1, 2, 2],
                                     window_size=4, num_labels=3)
    torch.manual_seed(0)
    model = sparsify(transformers.SwinForImageClassification(config)).eval()
    assert ModelForward(model).describe == "model(pixel_values=x)"
    result = SearchSession(model, "cpu", input_shape=(1, 3, 128, 128), rest_ms=0.1, proxy=proxy(model, proxy_images),
                           **SMALL).run()
    assert result.call == "model(pixel_values=x)"
    report = result.validate("cpu", repeats=2, warmup=1, rounds=1)
    assert report.whole and report.call == "model(pixel_values=x)" and report.dense_ms > 0


class NeedsMask(Segmenter):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * mask


class SkipsBackbone(Segmenter):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean() + self.a.sum()


@pytest.mark.parametrize(("model", "kwargs", "message"), [
    (NeedsMask(), {}, r"could not run the model as model\(x\).*pass call=lambda model, x"),
    (SkipsBackbone(), {}, "never runs its sparse Swin backbone"),
    (Segmenter(), {"call": "nope"}, "has no method 'nope'"),
    (Segmenter(), {"call": 3}, "call must be None, a method name or a callable"),
    (Segmenter(), {"rest_ms": -1.0}, r"rest_ms.*-1\.0.*>= 0|rest_ms.*>= 0.*-1\.0"),
    (Segmenter(), {"rest_ms": float("nan")}, r"rest_ms.*nan.*>= 0|rest_ms.*>= 0.*nan"),
    (Segmenter(), {"budget_of": "head"}, r"budget_of.*'model'.*'backbone'"),
])
def test_models_the_sdk_cannot_time_are_refused_naming_the_fix(model, kwargs, message, proxy_images):
    with pytest.raises((ValueError, TypeError), match=message):
        SearchSession(model.eval(), "cpu", input_shape=SHAPE, proxy=proxy(model.backbone, proxy_images), **kwargs,
                      **SMALL)


def test_a_forward_with_more_inputs_runs_through_call(proxy_images):
    model = NeedsMask().eval()
    mask = torch.ones(1)
    session = SearchSession(model, "cpu", input_shape=SHAPE, call=lambda m, x: m(x, mask), rest_ms=0.2,
                            proxy=proxy(model.backbone, proxy_images), **SMALL)
    assert session.rest.calls == 1 and session.forward.describe.endswith("(model, x)")


@pytest.mark.slow
def test_a_profile_of_the_whole_model_carries_its_rest_to_the_predictor_and_the_search(tmp_path, proxy_images):
    from sparsevit_sdk.dataset import load_profiles
    from sparsevit_sdk.profiler import SweepSettings, profile_model

    model = Segmenter(work=60).eval()
    forward = ModelForward(model)
    quick = SweepSettings(warmup=1, repeats=2, model_repeats=3, random_configs=1, rounds=1)
    rows = profile_model(model, resolutions=["112x112"], hw="my-cpu", out=tmp_path, settings=quick, clock="cpu",
                         progress=False)
    whole = rows[rows["layer"] == "whole"]
    assert len(whole) == 1 and whole["model"].item() == forward.key() and whole["index"].item() == 1
    assert (tmp_path / "my-cpu" / f"{forward.key()}.parquet").is_file()
    assert model.backbone.block_sparsity == [[0.0] * d for d in model.backbone.depths]  # the model is untouched
    predictor = LatencyPredictor.calibrate(LatencyPredictor.load("cpu"), load_profiles(tmp_path / "my-cpu"))
    rest = predictor.rest_for(forward.key(), SHAPE)
    head = time_callable(model.head, warmup=2, repeats=10, clock="cpu").p10_ms
    assert rest["calls"] == 1 and 0.5 * head < rest["ms"] < 2 * head
    assert predictor.rest_for(forward.key(), (1, 3, 224, 224)) is None
    again = LatencyPredictor.from_dict(predictor.to_dict())
    assert again.learned_.rest == predictor.learned_.rest
    # a search elsewhere takes the rest the target's profile measured (this CPU stands in for "elsewhere")
    foreign = dict(predictor.learned_.fingerprint, fingerprint_id="other", name="Another CPU")
    predictor = LatencyPredictor.from_dict({**predictor.to_dict(), "fingerprint": foreign})
    from_profile = rest_of_model(forward, predictor, search_space(model.backbone), SHAPE)
    assert from_profile.source == "measured" and from_profile.ms == rest["ms"] and "when it was profiled" in \
        from_profile.note
