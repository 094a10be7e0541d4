"""Read-only means read-only: every public call that is not documented to change the model leaves its
weights (bit for bit, the same Parameter objects), buffers, dtypes, device, every module's train/eval
flag, sparsity and window score as they were: after it returns, after it raises, and after a Ctrl-C
(KeyboardInterrupt) from inside it.

The model is swin_micro in an unusual state, so a call that "restores" by resetting to defaults is
caught: a non-uniform sparsity, the ``deviation`` window score, one stage in train mode and the rest
in eval, its final norm (unused by its forward) in float64 and an extra float64 buffer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import torch
import torch.nn as nn

from sparsevit_sdk import (
    LatencyPredictor,
    SearchSession,
    build_model,
    measure_latency,
    search_space,
    set_sparsity,
    sparse_backbone,
)
from sparsevit_sdk.accuracy import AccuracyProxy, AgreementProxy, SplitProxy
from sparsevit_sdk.accuracy.metrics import BatchMean
from sparsevit_sdk.demo import default_proxy
from sparsevit_sdk.deploy import export_onnx
from sparsevit_sdk.profiler import SweepSettings, profile_model
from sparsevit_sdk.sparse import set_window_score

SHAPE = (1, 3, 64, 64)


def _mean_output(outputs, targets) -> float:
    """A tiny 'metric' over a SparseSwin's four maps (higher is better, as a proxy's)."""
    return float(sum(o.float().mean() for o in outputs))


def _odd_model() -> nn.Module:
    model = build_model("swin_micro")
    set_sparsity(model, search_space(model).config([0.1, 0.2, 0.3, 0.5]))
    set_window_score(model, "deviation")
    model.eval()
    model.stages[1].train()
    model.norm.double()  # forward() returns the stage maps: this float64 part is carried, never run
    model.register_buffer("calibration", torch.linspace(0, 1, 7, dtype=torch.float64) / 3)
    return model


def snapshot(model: nn.Module) -> dict:
    """Everything a read-only call must leave alone, bit for bit."""
    backbone = sparse_backbone(model)
    return {
        "objects": [id(p) for p in model.parameters()] + [id(b) for b in model.buffers()],
        "tensors": {name: (t.dtype, t.device, t.requires_grad, t.detach().cpu().reshape(-1).view(torch.uint8).clone())
                    for name, t in model.state_dict(keep_vars=True).items() if isinstance(t, torch.Tensor)},
        "modes": {name: m.training for name, m in model.named_modules()},
        "sparsity": backbone.block_sparsity,
        "window_score": [stage.window_score for stage in backbone.stages],
        "hooks": [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()],
    }


def assert_unchanged(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    for key in ("objects", "modes", "sparsity", "window_score", "hooks"):
        assert after[key] == before[key], key
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, (dtype, device, grad, data) in before["tensors"].items():
        got = after["tensors"][name]
        assert (got[0], got[1], got[2]) == (dtype, device, grad), name
        assert torch.equal(got[3], data), f"{name} changed value"


@contextmanager
def raising_in_forward(model: nn.Module, error: BaseException, after: int = 0) -> Iterator[None]:
    """Raise ``error`` from inside the model's forward at its ``after``-th call (a Ctrl-C mid-call)."""
    calls = [0]

    def hook(module, args):
        calls[0] += 1
        if calls[0] > after:
            raise error

    handle = sparse_backbone(model).stages[2].register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@pytest.fixture()
def model() -> nn.Module:
    """A fresh one per test, so one call's damage is not blamed on the next."""
    return _odd_model()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, *SHAPE[1:], generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def searched(images):
    """A tiny search's result for such a model (the search itself is walked below)."""
    model = _odd_model()
    proxy = AgreementProxy(model, images, batch_size=2)
    return SearchSession(model, "cpu", proxy=proxy, input_shape=SHAPE, latency_budget=0.9, population=4, parents=2,
                         generations=1, progress=False).run()


def _loader(images):
    return [(images[:2], torch.zeros(2)), (images[2:], torch.ones(2))]


CALLS: dict[str, Callable] = {
    "measure_latency": lambda m, ctx: measure_latency(m, SHAPE, warmup=0, repeats=1),
    "measure_latency_bf16": lambda m, ctx: measure_latency(m, SHAPE, warmup=0, repeats=1, dtype="bf16"),
    "predict_config": lambda m, ctx: LatencyPredictor.load("cpu").predict_config(m, SHAPE,
                                                                                 search_space(m).uniform(0.5)),
    "predict_configs": lambda m, ctx: LatencyPredictor.load("cpu").predict_configs(
        m, SHAPE, [search_space(m).uniform(s) for s in (0.0, 0.5)]),
    "accuracy_proxy": lambda m, ctx: AccuracyProxy(m, _loader(ctx["images"]), metric=_mean_output)(
        search_space(m).uniform(0.5)),
    "agreement_proxy": lambda m, ctx: AgreementProxy(m, ctx["images"], batch_size=2)(search_space(m).uniform(0.5)),
    "default_proxy": lambda m, ctx: default_proxy(m, SHAPE, num_images=1)(search_space(m).uniform(0.5)),
    "split_proxy": lambda m, ctx: SplitProxy(AccuracyProxy(m, _loader(ctx["images"]), metric=BatchMean(_mean_output)),
                                             parts=2)(search_space(m).uniform(0.5)),
    "validate": lambda m, ctx: ctx["searched"].validate("cpu", model=m, repeats=1, warmup=0, rounds=1),
}


@pytest.mark.parametrize("call", CALLS)
def test_a_read_only_call_leaves_the_model_as_it_was(model, images, searched, call):
    before = snapshot(model)
    CALLS[call](model, {"images": images, "searched": searched})
    assert_unchanged(before, model)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")], ids=["ctrl-c", "error"])
@pytest.mark.parametrize("call", [name for name in CALLS if not name.startswith("predict")])  # those run no forward
def test_a_read_only_call_interrupted_mid_forward_leaves_the_model_as_it_was(model, images, searched, call, error):
    before = snapshot(model)
    raised = KeyboardInterrupt if isinstance(error, KeyboardInterrupt) else Exception  # an error may be explained
    with raising_in_forward(model, error), pytest.raises(raised):
        CALLS[call](model, {"images": images, "searched": searched})
    assert_unchanged(before, model)


def test_the_search_leaves_the_model_as_it_was(model, images):
    before = snapshot(model)
    SearchSession(model, "cpu", proxy=AgreementProxy(model, images, batch_size=2), input_shape=SHAPE,
                  latency_budget=0.9, population=4, parents=2, generations=1, progress=False).run()
    assert_unchanged(before, model)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), ValueError("boom")], ids=["ctrl-c", "error"])
def test_a_search_whose_proxy_raises_leaves_the_model_as_it_was(model, images, error):
    agreement = AgreementProxy(model, images, batch_size=2)
    calls = [0]

    def proxy(cfg):
        calls[0] += 1
        if calls[0] == 3:
            raise error
        return agreement(cfg)

    before = snapshot(model)
    try:
        SearchSession(model, "cpu", proxy=proxy, input_shape=SHAPE, latency_budget=0.9, population=4, parents=2,
                      generations=1, progress=False).run()
    except type(error):
        pass  # a search may stop at its last finished generation instead: either way the model is as it was
    assert_unchanged(before, model)


class Segmenter(nn.Module):
    """A whole model around the backbone, its head in train mode with running statistics to disturb."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _odd_model()
        self.head = nn.BatchNorm2d(self.backbone.dims[-1]).train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1])


@pytest.mark.parametrize("rest_ms", [None, 0.5], ids=["rest-measured", "rest-given"])
def test_a_search_of_a_whole_model_leaves_it_as_it_was(images, rest_ms):
    model = Segmenter()
    before = snapshot(model)
    SearchSession(model, "cpu", proxy=lambda cfg: -sum(cfg.ratios), input_shape=SHAPE, rest_ms=rest_ms,
                  latency_budget=0.9, population=4, parents=2, generations=0, progress=False).run()
    assert_unchanged(before, model)


@pytest.mark.slow  # a profile of the model object: ~10 s
def test_profiling_a_model_object_leaves_it_as_it_was(model):
    before = snapshot(model)
    profile_model(model, resolutions=["64"], grid=[0.0, 0.5], progress=False,
                  settings=SweepSettings(warmup=0, repeats=1, model_repeats=1, random_configs=1, rounds=1))
    assert_unchanged(before, model)


@pytest.mark.slow  # one ONNX export each, ~5 s
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("error", [None, KeyboardInterrupt()], ids=["returns", "ctrl-c"])
def test_export_leaves_the_model_as_it_was(model, tmp_path, dtype, error):
    pytest.importorskip("onnx")
    before = snapshot(model)
    cfg = search_space(model).uniform(0.5)
    if error is None:  # without the graph optimizer, which works on the graph once the model is traced
        export_onnx(model, SHAPE, tmp_path / "m.onnx", cfg, dtype=dtype, optimize=False)
    else:
        with raising_in_forward(model, error), pytest.raises(KeyboardInterrupt):
            export_onnx(model, SHAPE, tmp_path / "m.onnx", cfg, dtype=dtype, optimize=False)
        assert not (tmp_path / "m.onnx").exists()
    assert_unchanged(before, model)


# --- one model, several threads ---


def test_split_proxy_over_threads_scores_as_one_worker_and_leaves_the_model(model, images):
    proxy = AccuracyProxy(model, _loader(images) * 2, metric=BatchMean(_mean_output))
    cfg = search_space(model).uniform(0.5)
    before = snapshot(model)
    with ThreadPoolExecutor(4) as pool:
        assert SplitProxy(proxy, parts=4, executor=pool)(cfg) == proxy(cfg)
    assert_unchanged(before, model)


def test_a_forward_in_another_thread_while_an_sdk_call_borrows_the_model_is_refused(model, images):
    borrowed, done = threading.Event(), threading.Event()

    def metric(outputs, targets) -> float:  # runs inside the proxy's call, with the model at the scored config
        borrowed.set()
        assert done.wait(30)
        return 0.0

    proxy = AccuracyProxy(model, _loader(images)[:1], metric=metric)
    with ThreadPoolExecutor(1) as pool:
        scoring = pool.submit(proxy, search_space(model).uniform(0.7))
        assert borrowed.wait(30)
        try:
            with pytest.raises(RuntimeError, match=r"another thread.*copy\.deepcopy\(model\)"), torch.no_grad():
                model(images[:1])
        finally:
            done.set()
        scoring.result()
    with torch.no_grad():  # the call has returned: the model is this thread's again
        model(images[:1])
