"""SearchSpace and SparsityConfig: knobs, constraints, JSON, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparsevit_sdk import SparsityConfig, build_model, search_space, set_sparsity


def test_swin_t_has_six_pair_knobs():
    space = search_space(build_model("swin_t"))
    assert [k.name for k in space.knobs] == [
        "stage1.pair1", "stage2.pair1", "stage3.pair1", "stage3.pair2", "stage3.pair3", "stage4.pair1"]
    assert space.grid == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def test_block_granularity_expands_one_value_per_block(micro):
    space = search_space(micro, granularity="block")
    cfg = space.config([0.1, 0.2, 0.0, 0.3, 0.4, 0.5, 0.6, 0.7])
    expected = [[0.1, 0.2], [0.0, 0.3], [0.4, 0.5], [0.6, 0.7]]
    assert cfg.block_sparsity(micro.signature, micro.depths) == expected


def test_samples_lie_on_grid_and_respect_order():
    space = search_space(build_model("swin_t"))
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(200)]
    for cfg in samples:
        space.validate(cfg)
        assert set(cfg.ratios) <= set(space.grid)
        assert list(cfg.ratios[2:5]) == sorted(cfg.ratios[2:5])
    assert len(set(samples)) > 150
    assert space.sample(3) == space.sample(3)


def test_repair_sorts_within_stage_only():
    space = search_space(build_model("swin_t"))
    assert space.repair([0.5, 0.1, 0.6, 0.2, 0.4, 0.0]) == (0.5, 0.1, 0.2, 0.4, 0.6, 0.0)


def test_json_round_trip(tmp_path, micro):
    space = search_space(micro)
    cfg = space.config([0.1, 0.3, 0.5, 0.7])
    path = tmp_path / "cfg.json"
    cfg.to_json(path)
    assert SparsityConfig.from_json(path, model=micro) == cfg
    assert SparsityConfig.from_json(cfg.to_json()) == cfg
    assert space.decode(space.encode(cfg)) == cfg


def test_config_from_another_model_is_refused(tmp_path, micro):
    cfg = search_space(build_model("swin_t")).uniform(0.5)
    with pytest.raises(ValueError, match="made for model 'swin-e96"):
        set_sparsity(micro, cfg)
    path = tmp_path / "t.json"
    cfg.to_json(path)
    with pytest.raises(ValueError, match="search_space"):
        SparsityConfig.from_json(path, model=micro)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval(micro_space, bad):
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        micro_space.uniform(bad)


def test_wrong_number_of_knobs(micro_space, micro):
    with pytest.raises(ValueError, match="expected 4 sparsity values"):
        micro_space.config([0.1, 0.2])
    bad = SparsityConfig((0.1, 0.2), micro.signature)
    before = micro.block_sparsity
    with pytest.raises(ValueError, match="2 values but the model has 4"):
        set_sparsity(micro, bad)
    assert micro.block_sparsity == before  # nothing half-applied


def test_decreasing_within_stage_is_refused():
    space = search_space(build_model("swin_micro"), granularity="block")
    with pytest.raises(ValueError, match="decreases within stage 1.*repair"):
        space.config([0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    free = search_space(build_model("swin_micro"), granularity="block", monotonic=False)
    assert free.config([0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).ratios[0] == 0.5


def test_corrupt_json_is_explained(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SparsityConfig.from_json(path)
    path.write_text(json.dumps({"ratios": [0.1]}))
    with pytest.raises(ValueError, match="needs 'ratios' and 'signature'"):
        SparsityConfig.from_json(path)


@pytest.mark.parametrize(("source", "message"), [
    ('{"ratios": "0000", "signature": "s"}', "'ratios' must be a list of numbers, got '0000'"),
    ('{"ratios": [true, 0], "signature": "s"}', "'ratios' must be a list of numbers"),
    ('{"ratios": [0.5], "signature": 7}', "'signature' must be a string"),
    ("[0.5, 0.5, 0.5, 0.5]", r"needs 'ratios' and 'signature' in an object\): \[0.5"),
    ("[" * 200_000 + "]" * 200_000, "not valid JSON"),
])
def test_config_text_of_the_wrong_shape_is_refused_naming_the_field(source, message):
    from sparsevit_sdk import SparsityConfig

    with pytest.raises(ValueError, match=message):
        SparsityConfig.from_json(source)


def test_a_grid_with_repeated_values_is_refused(micro):
    with pytest.raises(ValueError, match=r"grid has repeated values \[0.5\]"):
        search_space(micro, grid=[0.0, 0.5, 0.5])
