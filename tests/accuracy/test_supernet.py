"""demo/recipe.py: the demo supernet recipe, its cache and its plateau rule."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from sparsevit_sdk.demo import build_demo_model, train_demo_supernet
from sparsevit_sdk.profiler.timing import num_threads

from .test_demo import TINY


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two torch threads on a shared, loaded 2-core machine made this file 9x slower (measured: 490 s vs 52 s)."""
    with num_threads(1):
        yield


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


@pytest.mark.slow
def test_demo_supernet_is_deterministic_under_its_seed():
    runs = [train_demo_supernet(dataclasses.replace(TINY, seed=seed), progress=False) for seed in (0, 0, 1)]
    weights = [r.adapted.state_dict()["classify.weight"] for r in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert TINY.key() != dataclasses.replace(TINY, adapt_steps=3).key()
    assert TINY.key(dense_only=True) == dataclasses.replace(TINY, adapt_steps=3, threads=2).key(dense_only=True)
    assert TINY.key(dense_only=True) != dataclasses.replace(TINY, pretrain_steps=0).key(dense_only=True)


def test_plateau_rule_needs_five_points_and_compares_the_last_fifth():
    from sparsevit_sdk.demo.recipe import plateaued

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


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_corrupt_supernet_cache_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    path = tmp_path / f"demo_dense_{TINY.key(dense_only=True)}.pt"
    if damage == "truncated":  # a write killed halfway
        torch.save(build_demo_model(TINY.backbone).state_dict(), path)
        path.write_bytes(path.read_bytes()[:1000])
    else:  # weights of another model under this recipe's name
        torch.save(build_demo_model(TINY.backbone, head_dim=16).state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.demo.recipe"):
        net = train_demo_supernet(TINY, cache_dir=tmp_path, progress=False)
    assert net.dense_log is not None  # trained again, not loaded
    assert any(str(path) in r.getMessage() and "training again" in r.getMessage() for r in caplog.records)
    rebuilt = torch.load(path, weights_only=True)  # and rewritten
    assert all(torch.equal(v, rebuilt[k]) for k, v in net.dense.state_dict().items())
