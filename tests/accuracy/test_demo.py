"""demo/digits.py: the digit-canvas task, its splits and its segmenter."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sparsevit_sdk import set_sparsity
from sparsevit_sdk.demo import NUM_CLASSES, DemoRecipe, DigitCanvases, segmentation_loss
from sparsevit_sdk.demo.digits import SPLITS, source_indices
from sparsevit_sdk.profiler.timing import num_threads

from .conftest import SMALL, small_loader


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two torch threads on a shared, loaded 2-core machine made this file 9x slower (measured: 490 s vs 52 s)."""
    with num_threads(1):
        yield


def test_splits_use_disjoint_source_digits():
    parts = [set(source_indices(s).tolist()) for s in SPLITS]
    assert all(a.isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    assert set().union(*parts) == set(range(1797))
    assert [len(p) for p in parts] == [1078, 359, 360]
    assert set(DigitCanvases("test", 1).sources.tolist()) == parts[2]


def test_canvases_are_deterministic_and_order_independent():
    a, b = DigitCanvases("val", 4, **SMALL), DigitCanvases("val", 4, **SMALL)
    later_first = [b[i] for i in (3, 2, 1, 0)][::-1]
    for (xa, ya), (xb, yb) in zip([a[i] for i in range(4)], later_first):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other_seed = DigitCanvases("val", 4, seed=1, **SMALL)[0]
    other_split = DigitCanvases("test", 4, **SMALL)[0]
    assert not torch.equal(a[0][0], other_seed[0]) and not torch.equal(a[0][0], other_split[0])


def test_canvases_are_mostly_background_with_labelled_digits():
    data = DigitCanvases("train", 16, size=224)
    image, mask = data[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert mask.shape == (224, 224) and mask.dtype == torch.int64
    fractions = [(data[i][1] > 0).float().mean().item() for i in range(16)]
    assert all(0.0 < f < 0.2 for f in fractions)  # every canvas has a digit, most pixels are background
    labels = torch.cat([data[i][1].unique() for i in range(16)]).unique()
    assert labels.min() == 0 and labels.max() <= NUM_CLASSES - 1 and len(labels) > 4
    canvas, mask = data.generate(0)
    assert canvas[mask > 0].mean() > canvas[mask == 0].mean() + 0.3  # digits stand out from the noise


def test_each_digit_sits_alone_in_its_own_cell():
    data = DigitCanvases("train", 32, size=(96, 130), cell=32, digit_px=(16, 28), digits_per_image=(1, 6))
    assert data.cells == (3, 4)
    counts = []
    for i in range(len(data)):
        mask = data.generate(i)[1]
        assert not mask[96:].any() and not mask[:, 128:].any()  # nothing in the strip the grid leaves over
        cells = mask[:96, :128].reshape(3, 32, 4, 32).transpose(0, 2, 1, 3).reshape(12, -1)  # (cell, pixels)
        labels = [set(np.unique(c[c > 0]).tolist()) for c in cells]
        assert all(len(ls) <= 1 for ls in labels)  # one digit per cell
        counts.append(sum(bool(ls) for ls in labels))
    assert min(counts) >= 1 and max(counts) <= 6 and len(set(counts)) > 2


def test_bad_canvas_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown split"):
        DigitCanvases("holdout", 4)
    with pytest.raises(ValueError, match="do not fit"):
        DigitCanvases("train", 4, size=32, digit_px=(16, 48))
    with pytest.raises(ValueError, match="1x1 cells"):
        DigitCanvases("train", 4, size=64, cell=56, digit_px=(16, 24), digits_per_image=(1, 2))
    with pytest.raises(IndexError):
        DigitCanvases("train", 4, **SMALL)[4]


def test_demo_model_forwards_sparsity_and_predicts_every_pixel(seg, space):
    assert seg.signature == seg.backbone.signature and seg.depths == seg.backbone.depths
    x = small_loader().dataset[0][0][None]
    try:
        set_sparsity(seg, space.uniform(0.5))
        assert seg.backbone.block_sparsity[0] == [0.5, 0.5]
        with torch.inference_mode():
            assert seg(x).shape == (1, NUM_CLASSES, 64, 64)
    finally:
        set_sparsity(seg, space.dense())


def test_gradients_flow_through_sparse_blocks(seg, space):
    model = set_sparsity(copy.deepcopy(seg).train(), space.uniform(0.5))
    x, y = next(iter(small_loader()))
    segmentation_loss(model(x), y).backward()
    unused = {"backbone.norm.weight", "backbone.norm.bias"}  # final norm feeds only forward_features
    no_grad = [n for n, p in model.named_parameters() if n not in unused and not p.grad.abs().sum() > 0]
    assert no_grad == []


TINY = DemoRecipe(size=96, pretrain_size=64, cell=32, digit_px=(16, 24), digits_per_image=(1, 2), batch_size=2,
                  pretrain_steps=1, finetune_steps=1, adapt_steps=2)


def test_recipe_loader_draws_canvases_like_training():
    x, y = next(iter(TINY.loader("val", 2, size=128)))
    assert x.shape == (2, 3, 128, 128) and y.shape == (2, 128, 128)
    assert TINY.loader("test", 3).dataset.cell == 32 and len(TINY.loader("test", 3).dataset) == 3
