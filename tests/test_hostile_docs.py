"""Hand-edited and damaged files (issue 13): every document is validated on load.

Each probe edits a file the SDK wrote the way a user would (a predictor, a device
fingerprint, a search checkpoint, a profile, a supernet cache) and asserts a clear error
that names the file and the field, or a warned rebuild; never a traceback from deep inside
or a silently wrong number.
"""

from __future__ import annotations

import json
import logging
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from sparsevit_sdk import SearchSpace, SparsityConfig
from sparsevit_sdk._data import shipped_predictors
from sparsevit_sdk._documents import DocumentError
from sparsevit_sdk.accuracy import DemoRecipe, build_demo_model, train_demo_supernet
from sparsevit_sdk.cli.fit import main as fit_main
from sparsevit_sdk.dataset.fingerprint import fingerprint_id
from sparsevit_sdk.predictor import LatencyPredictor
from sparsevit_sdk.profiler import SchemaError, SweepSettings, dataset_path, load_profiles, profile_model
from sparsevit_sdk.search.checkpoint import read_checkpoint, write_checkpoint
from sparsevit_sdk.search.engine import EvolutionSearch

# --- predictor files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor_doc() -> dict:
    return json.loads(shipped_predictors()["cpu"].read_text())


def _edit(doc: dict, dotted: str, value) -> dict:
    """A deep copy of ``doc`` with the field at ``dotted`` (``a.b.0``) set to ``value``, or
    deleted when ``value`` is ``...``."""
    doc = json.loads(json.dumps(doc))
    *parents, last = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    node = doc
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("field, value, named, expected", [
    ("scale.v1", -1, "'scale.v1'", "> 0"),
    ("scale", {"v3": 1.0}, "'scale'", "expected block kinds"),
    ("blocks", ["v1", "v9"], "'blocks[1]'", "v9"),
    ("overhead_ms", -1000, "'overhead_ms'", ">= 0"),
    ("scale.v1", math.nan, "'scale.v1'", "is NaN"),
    ("overhead_ms", "1.4", "'overhead_ms'", 'is "1.4", expected a finite number'),
    ("overhead_ms", None, "'overhead_ms'", "is null"),
    ("ms_per_gflop", math.inf, "'ms_per_gflop'", "is Infinity"),
    ("threads", [], "'threads'", "empty list"),
    ("threads.0", True, "'threads[0]'", "is true, expected an integer"),
    ("estimated", "no", "'estimated'", "true or false"),
    ("statistic", "mean_ms", "'statistic'", "one of"),
    ("unit_scale", {"rest": [[0.0, -2.0]]}, "'unit_scale.rest[0][1]'", ">= 0"),
    ("unit_scale", {"rest": 2.0}, "'unit_scale.rest'", "expected a list"),
    ("unit_curves", {"block_pair/0": [[4.0, 0.1], [2.0, 0.0]]}, "'unit_curves.block_pair/0'", "out of order"),
    ("params.n_estimators", "300", "'params.n_estimators'", "an integer"),
    ("units.block_pair.linear.1", -1e-8, "'units.block_pair.linear[1]'", ">= 0"),
    ("units.norm.linear", [0.1, 0.0], "'units.norm.linear'", "has 2 entries, expected 3"),
    ("units.score", ..., "'units.score'", "is missing"),
    ("units.score.booster", {"learner": 1}, "'units.score.booster.learner'", "is 1, expected an object"),
])
def test_predictor_field_is_refused_on_load(predictor_doc, tmp_path, field, value, named, expected):
    """Today ``scale: -1`` loads and a search "succeeds" at negative milliseconds."""
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(_edit(predictor_doc, field, value)))
    with pytest.raises(DocumentError) as err:
        LatencyPredictor.load(path)
    message = str(err.value)
    assert str(path) in message and named in message and expected in message, message
    assert "sparsevit-fit" in message  # the fix


def test_unedited_predictor_still_loads(predictor_doc, tmp_path):
    path = tmp_path / "same.json"
    path.write_text(json.dumps(predictor_doc))
    assert LatencyPredictor.load(path).overhead_ms_ == predictor_doc["overhead_ms"]


# --- fingerprints -----------------------------------------------------------------------------

FAST = SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=3)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("profiles")
    profile_model("swin_micro", resolutions=["64x64"], grid=(0.0, 0.5), settings=FAST, out=out, progress=False)
    return out


@pytest.fixture()
def folder(profiled, tmp_path):
    """A fresh copy of the dataset folder to vandalise."""
    return shutil.copytree(profiled / "cpu", tmp_path / "cpu")


def _fit(folder, tmp_path, capsys) -> tuple[int, str]:
    out = tmp_path / "pred.json"
    code = fit_main(["--profiles", str(folder), "--out", str(out)])
    assert code != 0 and not out.exists()
    return code, capsys.readouterr().err


def test_fingerprint_edited_to_another_device_is_refused_by_fit(folder, tmp_path, capsys):
    """Edited to claim an A100 over CPU rows: the stored id no longer hashes the content."""
    path = folder / "fingerprint.json"
    fp = json.loads(path.read_text())
    path.write_text(json.dumps({**fp, "name": "NVIDIA A100-SXM4-80GB", "device_type": "cuda"}, indent=2))
    _, err = _fit(folder, tmp_path, capsys)
    assert str(path) in err and "'fingerprint_id'" in err and "hash to" in err and "sparsevit-profile" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("content, expected", [
    ([], "the document is a list, expected an object"),
    ({"device_type": "cpu", "name": "x"}, "field 'fingerprint_id' is missing"),
    ({"fingerprint_id": "abc"}, "field 'device_type' is missing"),
])
def test_malformed_fingerprint_is_named(folder, content, expected):
    path = folder / "fingerprint.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DocumentError, match=expected) as err:
        load_profiles(folder)
    assert str(path) in str(err.value)


def test_fingerprint_of_other_rows_is_refused_not_dropped(folder, tmp_path, capsys):
    """A consistent sidecar of another device over these rows: fit used to drop the description."""
    path = folder / "fingerprint.json"
    other = {**json.loads(path.read_text()), "name": "Other CPU 9000"}
    other["fingerprint_id"] = fingerprint_id(other)
    path.write_text(json.dumps(other))
    with pytest.raises(SchemaError, match="field 'fingerprint_id'.*swin_micro.parquet.*Restore") as err:
        load_profiles(folder)
    assert str(path) in str(err.value)
    _, err = _fit(folder, tmp_path, capsys)
    assert str(path) in err and other["fingerprint_id"] in err


def test_untouched_folder_keeps_its_description(folder):
    df = load_profiles(folder)
    assert list(df.attrs["fingerprints"]) == list(df["fingerprint_id"].unique())


# --- profile schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("column, values, expected", [
    ("p10_ms", [math.nan] * 3, "'p10_ms' has 3 of"),
    ("latency_ms", [math.inf], "'latency_ms' has 1 of"),
    ("min_ms", [-0.5, 0.0], "'min_ms' has 2 of"),
])
def test_bad_latencies_are_refused_naming_column_and_rows(folder, tmp_path, capsys, column, values, expected):
    """They used to reach xgboost and fail there with a C++ stack trace."""
    path = dataset_path(folder.parent, "cpu", "swin_micro")
    df = pd.read_parquet(path)
    df.loc[df.index[:len(values)], column] = values
    df.to_parquet(path, index=False)
    with pytest.raises(SchemaError, match=expected) as err:
        load_profiles(folder)
    assert str(path) in str(err.value) and "re-profile" in str(err.value)
    _, err = _fit(folder, tmp_path, capsys)
    assert expected in err and "XGBoost" not in err


# --- search checkpoints -----------------------------------------------------------------------

SESSION = {"hardware": "cpu", "input_shape": [1, 3, 64, 64], "proxy_name": "quadratic", "elapsed_s": 1.5}


@pytest.fixture(scope="module")
def state(micro):
    space = SearchSpace.from_model(micro)
    states = []
    EvolutionSearch(space, lambda cfgs: 1.0 + (1.0 - np.array([c.ratios for c in cfgs])).sum(axis=1),
                    lambda cfg: -float(np.square(cfg.ratios).sum()), latency_budget=0.7, population=8, parents=3,
                    generations=1, seed=0, checkpoint=states.append).run()
    return states[-1]


@pytest.fixture()
def checkpoint(state, tmp_path):
    return write_checkpoint(tmp_path / "ck.json", state, SESSION)


@pytest.mark.parametrize("field, value, named, expected", [
    ("state.population.0.1", 99, "'state.population[0][1]'", "<= 8"),
    ("state.population.2.0", -1, "'state.population[2][0]'", ">= 0"),
    ("state.population.1", [0, 1], "'state.population[1]'", "has 2 entries, expected 4"),
    ("state.dense_ms", ..., "'state.dense_ms'", "is missing"),
    ("state.budget_ms", "5", "'state.budget_ms'", "expected a finite number > 0"),
    ("state.settings.grid", ..., "'state.settings.grid'", "is missing"),
    ("state.settings.monotonic", "yes", "'state.settings.monotonic'", "true or false"),
    ("state.predicted.0.1", -3.0, "'state.predicted[0][1]'", "> 0"),
    ("state.scores.0.0.0", 1.5, "'state.scores[0][0][0]'", "< 1"),
    ("state.rng_state", [3, [1, 2], None], "'state.rng_state'", "random.getstate()"),
    ("session.input_shape", "1x3x64x64", "'session.input_shape'", "expected a list"),
    ("session.hardware", ..., "'session.hardware'", "is missing"),
    ("session", [], "'session'", "expected an object"),
])
def test_checkpoint_field_is_refused_on_read(checkpoint, field, value, named, expected):
    checkpoint.write_text(json.dumps(_edit(json.loads(checkpoint.read_text()), field, value)))
    with pytest.raises(DocumentError) as err:
        read_checkpoint(checkpoint)
    message = str(err.value)
    assert str(checkpoint) in message and named in message and expected in message, message
    assert "start the search again" in message


def test_unedited_checkpoint_reads_back_the_same_state(checkpoint, state):
    assert read_checkpoint(checkpoint) == (state, SESSION)


# --- supernet cache ---------------------------------------------------------------------------

TINY = DemoRecipe(size=96, pretrain_size=64, cell=32, digit_px=(16, 24), digits_per_image=(1, 2), batch_size=2,
                  pretrain_steps=1, finetune_steps=1, adapt_steps=2)


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_corrupt_supernet_cache_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    path = tmp_path / f"demo_dense_{TINY.key(dense_only=True)}.pt"
    if damage == "truncated":  # a write killed halfway
        torch.save(build_demo_model(TINY.backbone).state_dict(), path)
        path.write_bytes(path.read_bytes()[:1000])
    else:  # weights of another model under this recipe's name
        torch.save(build_demo_model(TINY.backbone, head_dim=16).state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.accuracy.supernet"):
        net = train_demo_supernet(TINY, cache_dir=tmp_path, progress=False)
    assert net.dense_log is not None  # trained again, not loaded
    assert any(str(path) in r.getMessage() and "training again" in r.getMessage() for r in caplog.records)
    rebuilt = torch.load(path, weights_only=True)  # and rewritten
    assert all(torch.equal(v, rebuilt[k]) for k, v in net.dense.state_dict().items())


# --- sparsity order ---------------------------------------------------------------------------


def test_set_sparsity_refuses_decreasing_config_built_by_hand(micro):
    """Only ``space.config`` checked the order; a config built directly slipped through."""
    decreasing = (0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # stage 1's second block keeps more windows
    before = micro.block_sparsity
    with pytest.raises(ValueError, match=r"decreases within stage 1 \(\[0.5, 0.1\]\).*monotonic=False"):
        micro.set_sparsity(SparsityConfig(decreasing, micro.signature, "block"))
    assert micro.block_sparsity == before  # nothing half-applied
    free = SearchSpace.from_model(micro, granularity="block", monotonic=False).config(decreasing)
    try:
        for cfg in (free, SparsityConfig.from_json(free.to_json()),
                    SparsityConfig(decreasing, micro.signature, "block", monotonic=False)):
            assert micro.set_sparsity(cfg).block_sparsity[0] == [0.5, 0.1]
    finally:
        micro.set_sparsity(SearchSpace.from_model(micro).dense())
