"""Accuracy side: demo data, sparsity-aware adaptation, cached proxies, clear errors."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from sparsevit_sdk import SearchSpace, build_model
from sparsevit_sdk.accuracy import (
    NUM_CLASSES,
    Accuracy,
    AccuracyProxy,
    AgreementProxy,
    DemoRecipe,
    DigitCanvases,
    MeanIoU,
    adapt,
    build_demo_model,
    default_proxy,
    demo_loader,
    finetune,
    segmentation_loss,
    train_demo_supernet,
)
from sparsevit_sdk.accuracy.demo import SPLITS, source_indices
from sparsevit_sdk.profiler.timing import num_threads

SMALL = dict(size=64, cell=32, digit_px=(16, 24), digits_per_image=(1, 2))  # tiny canvases keep the suite fast


def small_loader(split: str = "train", num_images: int = 8, seed: int = 0):
    return demo_loader(split, num_images, batch_size=4, seed=seed, **SMALL)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two torch threads on a shared, loaded 2-core machine made this file 9x slower (measured: 490 s vs 52 s)."""
    with num_threads(1):
        yield


@pytest.fixture(scope="module")
def seg():
    """A random-init demo segmenter in eval mode; tests that train must work on a copy."""
    return build_demo_model("swin_micro", seed=0)


@pytest.fixture(scope="module")
def space(seg):
    return SearchSpace.from_model(seg)


# --- demo data -------------------------------------------------------------------------------


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


# --- demo model ------------------------------------------------------------------------------


def test_demo_model_forwards_sparsity_and_predicts_every_pixel(seg, space):
    assert seg.signature == seg.backbone.signature and seg.depths == seg.backbone.depths
    x = small_loader().dataset[0][0][None]
    try:
        seg.set_sparsity(space.uniform(0.5))
        assert seg.backbone.block_sparsity[0] == [0.5, 0.5]
        with torch.inference_mode():
            assert seg(x).shape == (1, NUM_CLASSES, 64, 64)
    finally:
        seg.set_sparsity(space.dense())


def test_gradients_flow_through_sparse_blocks(seg, space):
    model = copy.deepcopy(seg).train().set_sparsity(space.uniform(0.5))
    x, y = next(iter(small_loader()))
    segmentation_loss(model(x), y).backward()
    unused = {"backbone.norm.weight", "backbone.norm.bias"}  # final norm feeds only forward_features
    no_grad = [n for n, p in model.named_parameters() if n not in unused and not p.grad.abs().sum() > 0]
    assert no_grad == []


# --- adaptation ------------------------------------------------------------------------------


def test_adapt_samples_lie_in_the_space_and_vary(seg, space):
    log = adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=8, progress=False)
    configs = [step[0] for step in log.configs]
    assert all(len(step) == 1 for step in log.configs)
    for cfg in configs:
        space.validate(cfg)  # on this model, order repaired within each stage
        assert set(cfg.ratios) <= set(space.grid)
    assert len(set(configs)) > 4
    assert len(log.losses) == 8 and all(np.isfinite(log.losses))


def test_sandwich_adds_dense_and_sparsest_every_step(seg, space):
    log = adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=3, sandwich=True, progress=False)
    assert all(step[:2] == (space.dense(), space.sparsest()) and len(step) == 3 for step in log.configs)


def test_adapt_changes_weights_deterministically_and_restores_state(seg, space):
    before = copy.deepcopy(seg.state_dict())
    runs = []
    for seed in (0, 0, 1):
        model = copy.deepcopy(seg).set_sparsity(space.uniform(0.3))
        log = adapt(model, small_loader(), segmentation_loss, steps=3, seed=seed, progress=False)
        assert not model.training and model.block_sparsity == [[0.3, 0.3]] * 4
        runs.append((model.state_dict(), [c[0] for c in log.configs]))
    assert set(runs[0][0]) - set(before) == {f"backbone.stages.{i}.sparsity" for i in range(4)}  # sparse: saved
    changed = [k for k, v in before.items() if not torch.equal(v, runs[0][0][k])]
    assert len(changed) > len(before) // 2
    assert all(torch.equal(v, runs[1][0][k]) for k, v in runs[0][0].items()) and runs[0][1] == runs[1][1]
    assert runs[0][1] != runs[2][1]


def test_finetune_trains_at_one_config(seg, space):
    model = copy.deepcopy(seg)
    log = finetune(model, small_loader(), segmentation_loss, steps=2, config=space.uniform(0.2), progress=False)
    assert log.configs == [(space.uniform(0.2),)] * 2
    assert not torch.equal(model.lateral[0].weight, seg.lateral[0].weight)


def test_empty_loader_is_a_clear_error(seg):
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 3, 64, 64)))
    with pytest.raises(ValueError, match="yielded no batches"):
        adapt(copy.deepcopy(seg), empty, segmentation_loss, steps=2, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        AccuracyProxy(seg, empty, metric=MeanIoU(NUM_CLASSES))
    with pytest.raises(ValueError, match="at least one input image"):
        AgreementProxy(seg, torch.zeros(0, 3, 64, 64))
    with pytest.raises(ValueError, match="steps must be positive"):
        finetune(seg, small_loader(), segmentation_loss, steps=0)


def test_config_of_another_model_is_a_clear_error(seg):
    foreign = SearchSpace.from_model(build_model("swin_t"))
    proxy = AgreementProxy(seg, torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="build a config from this model's SearchSpace"):
        proxy(foreign.uniform(0.5))
    with pytest.raises(ValueError, match="made for model"):
        adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=1, space=foreign, progress=False)
    with pytest.raises(TypeError, match="sparsify"):
        AgreementProxy(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 8, 8))


# --- the demo supernet recipe ----------------------------------------------------------------


TINY = DemoRecipe(size=96, pretrain_size=64, cell=32, digit_px=(16, 24), digits_per_image=(1, 2), batch_size=2,
                  pretrain_steps=1, finetune_steps=1, adapt_steps=2)


def test_demo_supernet_trains_dense_then_adapts_and_caches(tmp_path):
    net = train_demo_supernet(TINY, cache_dir=tmp_path, progress=False)
    init = build_demo_model(TINY.backbone, seed=TINY.seed).state_dict()
    dense, adapted = net.dense.state_dict(), net.adapted.state_dict()
    assert not torch.equal(dense["classify.weight"], init["classify.weight"])
    assert not torch.equal(adapted["classify.weight"], dense["classify.weight"])
    assert len(net.dense_log.losses) == 2 and len({c[0] for c in net.adapt_log.configs}) == 2  # 1 + 1 dense steps
    assert not net.dense.training and net.adapted.block_sparsity == [[0.0, 0.0]] * 4

    again = train_demo_supernet(TINY, cache_dir=tmp_path, progress=False)  # both loaded, nothing trained
    assert again.dense_log is None and again.adapt_log is None
    assert all(torch.equal(v, again.adapted.state_dict()[k]) for k, v in adapted.items())

    sandwich = train_demo_supernet(dataclasses.replace(TINY, sandwich=True), cache_dir=tmp_path, progress=False)
    assert sandwich.dense_log is None and len(sandwich.adapt_log.configs[0]) == 3  # dense part shared
    assert all(torch.equal(v, sandwich.dense.state_dict()[k]) for k, v in dense.items())
    assert sorted(p.name.split("_")[1] for p in tmp_path.glob("*.pt")) == ["adapted", "adapted", "dense"]


def test_demo_supernet_is_deterministic_under_its_seed():
    runs = [train_demo_supernet(dataclasses.replace(TINY, seed=seed), progress=False) for seed in (0, 0, 1)]
    weights = [r.adapted.state_dict()["classify.weight"] for r in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert TINY.key() != dataclasses.replace(TINY, adapt_steps=3).key()
    assert TINY.key(dense_only=True) == dataclasses.replace(TINY, adapt_steps=3, threads=2).key(dense_only=True)
    assert TINY.key(dense_only=True) != dataclasses.replace(TINY, pretrain_steps=0).key(dense_only=True)


def test_recipe_loader_draws_canvases_like_training():
    x, y = next(iter(TINY.loader("val", 2, size=128)))
    assert x.shape == (2, 3, 128, 128) and y.shape == (2, 128, 128)
    assert TINY.loader("test", 3).dataset.cell == 32 and len(TINY.loader("test", 3).dataset) == 3


# --- proxies ---------------------------------------------------------------------------------


def test_proxy_caches_by_config_and_restores_the_model(seg, space):
    proxy = AccuracyProxy(seg, small_loader("val"), metric=MeanIoU(NUM_CLASSES))
    seg.set_sparsity(space.uniform(0.2)).train()
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
        seg.set_sparsity(space.dense()).eval()


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
    space = SearchSpace.from_model(micro)
    demo = default_proxy(micro, (1, 3, 64, 64), num_images=2)  # a bare SparseSwin: four stage maps
    noise = default_proxy(micro, (3, 32, 32), num_images=2)
    assert demo.name == "agreement-cosine(demo, 2x64x64)" and noise.name == "agreement-cosine(synthetic, 2x32x32)"
    assert demo.batches[0].shape == (2, 3, 64, 64) and noise.batches[0].shape == (2, 3, 32, 32)
    assert demo(space.dense()) == pytest.approx(1.0, abs=1e-6)
    assert demo(space.uniform(0.5)) < 1.0
    assert micro.block_sparsity == [[0.0, 0.0]] * 4


def test_metrics_on_known_predictions():
    target = torch.tensor([[0, 0, 1, 2]])  # (B=1, N=4)
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1, 1, 2]]), 3).permute(0, 2, 1).float()  # (1, 3, 4)
    miou, acc = MeanIoU(3), Accuracy()
    miou.update(logits, target)
    acc.update(logits, target)
    assert miou.compute() == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert acc.compute() == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="empty"):
        MeanIoU(3).compute()
    with pytest.raises(ValueError, match="classes on dim 1"):
        MeanIoU(4).update(logits, target)


def test_plateau_rule_needs_five_points_and_compares_the_last_fifth():
    from sparsevit_sdk.accuracy.supernet import plateaued

    rising = [(100 * i, 0.5 + 0.05 * i) for i in range(1, 6)]
    assert not plateaued(rising[:4], 0.01) and not plateaued(rising, 0.01)
    flat = [*rising[:4], (500, rising[3][1] * 1.005)]  # +0.5 % over the last fifth
    assert plateaued(flat, 0.01) and not plateaued(flat, 0.001)
    dip = [*rising[:4], (500, 0.6)]  # worse than the best of the first four fifths
    assert plateaued(dip, 0.01)


def test_dense_phases_stop_at_the_plateau_and_keep_their_curve(tmp_path):
    recipe = dataclasses.replace(TINY, pretrain_steps=40, finetune_steps=0, cycle_steps=(2, 2), val_images=2)
    net = train_demo_supernet(recipe, cache_dir=tmp_path, progress=False)
    steps = [c.step for c in net.dense_curve]
    assert steps[:5] == [2, 4, 6, 8, 10] and len(net.dense_log.losses) == steps[-1] < 40  # stopped early
    assert all(c.size == recipe.pretrain_size for c in net.dense_curve)
    assert train_demo_supernet(recipe, cache_dir=tmp_path, progress=False).dense_curve == net.dense_curve  # cached


def test_recipe_window_score_reaches_both_models_and_keeps_the_dense_cache(tmp_path):
    norm = dataclasses.replace(TINY, window_score="norm")
    assert norm.key(dense_only=True) == TINY.key(dense_only=True) and norm.key() != TINY.key()
    net = train_demo_supernet(norm, cache_dir=tmp_path, progress=False)
    assert {s.window_score for m in (net.dense, net.adapted) for s in m.backbone.stages} == {"norm"}
    assert {s.window_score for s in train_demo_supernet(TINY, progress=False).dense.backbone.stages} == {"deviation"}
