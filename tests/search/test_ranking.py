"""search/ranking.py: a proxy that cannot rank configs is named before the search optimises it, on a real
tiny classifier scored by a real AccuracyProxy; one that ranks is left alone."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from sparsevit_sdk import SearchResult, SearchSession, build_model, search_space, set_sparsity
from sparsevit_sdk.accuracy import AccuracyProxy, SplitProxy
from sparsevit_sdk.accuracy.metrics import Accuracy, MeanIoU
from sparsevit_sdk.search.engine import SearchEngine
from sparsevit_sdk.search.ranking import proxy_warning

SHAPE = (1, 3, 112, 112)
IMAGES = 64
CLASSES = 4


class _Classifier(nn.Module):
    """swin_micro, mean-pooled, and a linear head over ``CLASSES`` classes (random init, seeded)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.backbone = build_model("swin_micro", seed=None)
            self.head = nn.Linear(self.backbone.dims[-1], CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1].mean((2, 3)))  # (B, CLASSES)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return _Classifier().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(IMAGES, 3, *SHAPE[2:], generator=torch.Generator().manual_seed(0))


def _labels_of(model: nn.Module, images: torch.Tensor, sparsity: float) -> torch.Tensor:
    """What ``model`` answers at uniform ``sparsity``: labels that config scores 1.0 on."""
    space = search_space(model)
    with torch.inference_mode():
        set_sparsity(model, space.uniform(sparsity))
        labels = model(images).argmax(1)
        set_sparsity(model, space.dense())
    return labels


def _proxy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> AccuracyProxy:
    return AccuracyProxy(model, zip(images.split(16), labels.split(16)), metric=Accuracy())


def _search(model: nn.Module, proxy: AccuracyProxy):
    """The engine on a cheap latency (sparser is faster): it scores dense and uniform 0.8 first."""
    space = search_space(model)
    return SearchEngine(space, lambda configs: np.array([10.0 * (1 - 0.5 * c.mean) for c in configs]), proxy,
                        strategy="random", samples=2, generations=0, latency_budget=0.7, seed=0).run()


def test_a_proxy_on_labels_the_model_never_learned_is_named_with_its_numbers(model, images, caplog):
    labels = torch.randint(CLASSES, (IMAGES,), generator=torch.Generator().manual_seed(1))
    with caplog.at_level(logging.WARNING):
        out = _search(model, _proxy(model, images, labels))
    assert out.proxy_warning is not None and caplog.text.count("cannot rank configs") == 1
    assert re.search(rf"the dense model scores {out.dense_score:.4g}, (near|below) chance \(0\.\d+", out.proxy_warning)
    assert "train (or adapt) the model" in out.proxy_warning


def test_a_sparse_config_beating_dense_beyond_the_noise_is_named(model, images):
    """Labels the sparsest config answers: it scores 1.0, dense far less (0.67 on these 64 images)."""
    proxy = _proxy(model, images, _labels_of(model, images, 0.8))
    out = _search(model, proxy)
    assert out.dense_score < 0.8 and "[0.8, 0.8, 0.8, 0.8] scores 1, above the dense" in out.proxy_warning
    error = np.hypot(proxy.noise(out.dense_score), proxy.noise(1.0))
    assert f"standard errors ({error:.3g})" in out.proxy_warning


def test_a_proxy_that_ranks_is_left_alone(model, images, caplog):
    """Labels the dense model answers (not all one class): dense scores 1.0, sparse configs less."""
    labels = _labels_of(model, images, 0.0)
    assert len(labels.unique()) > 1
    with caplog.at_level(logging.WARNING):
        out = _search(model, _proxy(model, images, labels))
    assert out.dense_score == 1.0 and out.proxy_warning is None and "cannot rank" not in caplog.text


def test_the_warning_reaches_the_result_its_summary_and_its_file(model, images, tmp_path):
    labels = torch.randint(CLASSES, (IMAGES,), generator=torch.Generator().manual_seed(1))
    result = SearchSession(model, "cpu", proxy=_proxy(model, images, labels), input_shape=SHAPE, latency_budget=0.9,
                           strategy="random", samples=2, generations=0, progress=False).run()
    assert "chance (" in result.proxy_warning and f"WARNING: {result.proxy_warning}" in result.summary()
    loaded = SearchResult.load(result.save(tmp_path / "r.json"))
    assert loaded.proxy_warning == result.proxy_warning
    older = {k: v for k, v in result.to_dict().items() if k != "proxy_warning"} | {"schema_version": 4}
    assert SearchResult.from_dict(older).proxy_warning is None


def test_chance_is_what_always_answering_the_most_frequent_label_scores():
    targets = torch.tensor([0, 0, 0, 1, 2, 2])
    assert Accuracy().chance(targets) == 0.5
    assert MeanIoU(4).chance(targets) == pytest.approx(0.5 / 3)  # IoU 0.5 for class 0, 0 for the 2 others present
    assert MeanIoU(4, ignore_index=0).chance(targets) == pytest.approx(2 / 3 / 2)


def test_a_proxy_that_says_nothing_of_noise_or_chance_is_not_judged(micro_space):
    dense, sparse = micro_space.dense(), micro_space.uniform(0.8)
    assert proxy_warning(lambda cfg: 0.0, {dense: 0.2, sparse: 0.9}, dense) is None


def test_a_split_proxy_says_what_the_proxy_it_splits_says(model, images):
    proxy = _proxy(model, images, torch.arange(IMAGES) % CLASSES)
    split = SplitProxy(proxy, parts=2)
    assert split.chance() == proxy.chance() == 0.25 and split.noise(0.5) == proxy.noise(0.5) == 0.5 / IMAGES ** 0.5
