"""accuracy/proxy.py: accuracy and agreement proxies, cached by config."""

from __future__ import annotations

import copy

import pytest
import torch

from sparsevit_sdk import search_space, set_sparsity
from sparsevit_sdk.accuracy import Accuracy, AccuracyProxy, AgreementProxy, MeanIoU
from sparsevit_sdk.demo import NUM_CLASSES, default_proxy
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.sparse import set_window_score

from .conftest import small_loader


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two torch threads on a shared, loaded 2-core machine made this file 9x slower (measured: 490 s vs 52 s)."""
    with num_threads(1):
        yield


def test_proxy_caches_by_config_and_restores_the_model(seg, space):
    proxy = AccuracyProxy(seg, small_loader("val"), metric=MeanIoU(NUM_CLASSES))
    set_sparsity(seg, space.uniform(0.2)).train()
    try:
        first = proxy(space.uniform(0.6))
        assert seg.training and seg.block_sparsity == [[0.2, 0.2]] * 4
        assert proxy(space.uniform(0.6)) == first
        assert proxy.cache_info() == (1, 1)
        proxy(space.uniform(0.0))
        assert proxy.cache_info() == (1, 2)
        proxy.cache_clear()
        assert proxy.cache_info() == (0, 0)
    finally:
        set_sparsity(seg, space.dense()).eval()


def test_accuracy_proxy_equals_a_direct_evaluation(seg, space):
    loader = small_loader("val")
    metric = MeanIoU(NUM_CLASSES)
    with torch.inference_mode():
        for x, y in loader:
            metric.update(seg(x), y)
    assert AccuracyProxy(seg, loader, metric=MeanIoU(NUM_CLASSES))(space.dense()) == metric.compute()
    by_function = AccuracyProxy(seg, loader, metric=lambda out, y: float((out.argmax(1) == y).float().mean()))
    assert by_function(space.dense()) == pytest.approx(AccuracyProxy(seg, loader, metric=Accuracy())(space.dense()))
    assert by_function.name == "<lambda>"


@pytest.mark.parametrize("measure", ["cosine", "kl"])
def test_agreement_is_one_when_dense_and_drops_when_sparse(seg, space, measure):
    images = torch.stack([small_loader("val").dataset[i][0] for i in range(4)])
    proxy = AgreementProxy(seg, images, measure=measure)
    assert proxy.name == f"agreement-{measure}"
    assert proxy(space.dense()) == pytest.approx(1.0, abs=1e-6)
    assert proxy(space.uniform(0.3)) < 1.0 - 1e-4
    assert proxy(space.uniform(0.8)) < proxy(space.uniform(0.3))


def test_default_proxy_uses_demo_canvases_or_noise(micro):
    space = search_space(micro)
    demo = default_proxy(micro, (1, 3, 64, 64), num_images=2)  # a bare SparseSwin: four stage maps
    noise = default_proxy(micro, (3, 32, 32), num_images=2)
    assert demo.name == "agreement-cosine(demo, 2x64x64)" and noise.name == "agreement-cosine(synthetic, 2x32x32)"
    assert demo.batches[0].shape == (2, 3, 64, 64) and noise.batches[0].shape == (2, 3, 32, 32)
    assert demo(space.dense()) == pytest.approx(1.0, abs=1e-6)
    assert demo(space.uniform(0.5)) < 1.0
    assert micro.block_sparsity == [[0.0, 0.0]] * 4


@pytest.mark.parametrize("kind", ["accuracy", "agreement"])
def test_a_cached_score_is_of_the_window_score_it_was_scored_with(seg, space, kind):
    images = torch.stack([small_loader("val").dataset[i][0] for i in range(4)])
    make = {"accuracy": lambda: AccuracyProxy(seg, small_loader("val"), metric=MeanIoU(NUM_CLASSES)),
            "agreement": lambda: AgreementProxy(seg, images)}[kind]
    proxy, cfg = make(), space.uniform(0.6)
    norm = proxy(cfg)
    set_window_score(seg, "deviation")
    try:
        deviation = proxy(cfg)
        assert deviation == make()(cfg) and deviation != norm  # scored afresh, as a new proxy scores it
    finally:
        set_window_score(seg, "norm")
    assert proxy(cfg) == norm and proxy.cache_info() == (1, 2)


@pytest.mark.parametrize("kind", ["accuracy", "agreement"])
def test_changed_weights_are_never_answered_from_stale_results(seg, space, kind):
    model = copy.deepcopy(seg)
    images = torch.stack([small_loader("val").dataset[i][0] for i in range(4)])
    make = {"accuracy": lambda: AccuracyProxy(model, small_loader("val"), metric=MeanIoU(NUM_CLASSES)),
            "agreement": lambda: AgreementProxy(model, images)}[kind]
    proxy, cfg = make(), space.uniform(0.6)
    before = proxy(cfg)
    with torch.no_grad():  # what a fine-tuning step or load_state_dict does: weights changed in place
        next(model.parameters()).mul_(1.5)
    with pytest.raises(RuntimeError, match=r"weights changed .* cache_clear\(\)"):
        proxy(cfg)
    proxy.cache_clear()  # an agreement proxy recomputes its dense outputs from the new weights
    after = proxy(cfg)
    assert after == make()(cfg) and after != before
