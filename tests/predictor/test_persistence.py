"""predictor/persistence.py: predictor files are validated on load, down to every tree index, and round-trip."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from sparsevit_sdk import LatencyPredictor, build_model, search_space
from sparsevit_sdk._data import shipped_predictors
from sparsevit_sdk._documents import DocumentError
from sparsevit_sdk.cli import search as search_cli
from sparsevit_sdk.dataset.schema import HOUR_MS

from ..conftest import _edit

SHAPE = (1, 3, 96, 96)


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    assert data["statistic"] == "p10_ms" and data["threads"] == [1] and data["versions"]["xgboost"]
    assert data["fingerprint"] and data["metrics"]["xgboost"]["n"] > 0
    loaded = LatencyPredictor.load(path)
    model = build_model("swin_micro")
    configs = [search_space(model).sample(i) for i in range(20)]
    assert np.array_equal(loaded.predict_configs(model, SHAPE, configs), fitted.predict_configs(model, SHAPE, configs))


def test_wrong_files_are_refused(fitted, tmp_path):
    pickled = tmp_path / "p.pkl"
    pickled.write_bytes(b"\x80\x04\x95\x00")
    with pytest.raises(ValueError, match="not JSON.*never pickles"):
        LatencyPredictor.load(pickled)
    data = fitted.to_dict()
    for change, message in [({"format": "other"}, "not a sparsevit latency predictor"),
                            ({"schema_version": 99}, r"\(schema 99\); this release .* reads schema 4"),
                            ({"features": ["dim"]}, "fitted on features"),
                            ({"units": {}}, "corrupt predictor file")]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(ValueError, match=message) as err:
            LatencyPredictor.load(path)
        assert str(path) in str(err.value) and "sparsevit-fit" in str(err.value)
    with pytest.raises(ValueError, match=r"for_hardware\('nowhere'\)"):
        LatencyPredictor.load("nowhere")


SHAPE = (1, 3, 112, 112)


@pytest.fixture(scope="module")
def shipped() -> dict:
    return LatencyPredictor.load("cpu").to_dict()


def _tree(doc: dict, unit: str = "block_pair", tree: int = 0) -> dict:
    return doc["units"][unit]["booster"]["learner"]["gradient_booster"]["model"]["trees"][tree]


def _leaf(tree: dict) -> int:
    return tree["left_children"].index(-1)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t["left_children"].__setitem__(0, -5), r"left_children' has -5 at node 0"),
    (lambda t: t["left_children"].__setitem__(0, 99999), r"left_children' has 99999 at node 0"),
    (lambda t: t["right_children"].__setitem__(0, 1), "does not make one tree"),
    (lambda t: t["split_indices"].__setitem__(0, 5000), r"splits on feature 5000; the model has 18"),
    (lambda t: t["split_conditions"].__setitem__(_leaf(t), 1e30), r"has 1e\+30 at node \d+, expected a finite value"),
    (lambda t: t["base_weights"].__setitem__(0, float("nan")), "base_weights' has nan at node 0"),
    (lambda t: t["split_type"].__setitem__(0, 1), "categorical split"),
    (lambda t: t["parents"].pop(), "has 16 entries, expected num_nodes = 17"),
    (lambda t: t["tree_param"].__setitem__("num_nodes", "x"), r"num_nodes' is 'x', expected an integer"),
])
def test_a_damaged_tree_is_refused_naming_the_unit_and_field_before_xgboost_loads_it(shipped, edit, message):
    doc = copy.deepcopy(shipped)
    edit(_tree(doc))
    with pytest.raises(DocumentError, match=r"units\.block_pair\.booster\.learner\.gradient_booster\.model\.trees"
                                            r"\[0\]\.") as err:
        LatencyPredictor.from_dict(doc, source="bad.json")
    assert err.match(message) and err.match("bad.json")


def test_booster_counts_must_match_the_predictor(shipped):
    doc = copy.deepcopy(shipped)
    doc["units"]["norm"]["booster"]["learner"]["learner_model_param"]["num_feature"] = "19"
    with pytest.raises(DocumentError, match=r"num_feature' is '19', expected 18"):
        LatencyPredictor.from_dict(doc)
    doc = copy.deepcopy(shipped)
    doc["units"]["norm"]["booster"]["learner"]["gradient_booster"]["model"]["trees"].pop()
    with pytest.raises(DocumentError, match="but the file holds 299 trees"):
        LatencyPredictor.from_dict(doc)


def test_a_damaged_predictor_file_fails_the_search_command_in_one_line(tmp_path, shipped, capsys):
    doc = copy.deepcopy(shipped)
    _tree(doc)["left_children"][0] = -5  # xgboost itself would crash the process (rc 139) at the first prediction
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    rc = search_cli.main(["--model", "swin_micro", "--hw", str(path), "--resolution", "112x112",
                          "--out", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 2 and "left_children' has -5 at node 0" in capsys.readouterr().err


def test_overheads_and_predictions_no_device_can_take_are_errors(shipped, micro):
    doc = copy.deepcopy(shipped)
    doc["overhead_ms"] = 1e300
    with pytest.raises(DocumentError, match=r"overhead_ms' is 1e\+300, expected a finite number >= 0 and <= 3.6e\+06"):
        LatencyPredictor.from_dict(doc)
    doc = copy.deepcopy(shipped)
    doc["scale"] = {kind: 1e12 for kind in doc["scale"]}
    predictor = LatencyPredictor.from_dict(doc)
    with pytest.raises(ValueError, match="not a latency .* under an hour"):
        predictor.predict_config(micro, SHAPE, search_space(micro).dense())


@pytest.fixture(scope="module")
def predictor_doc() -> dict:
    return json.loads(shipped_predictors()["cpu"].read_text())


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
    assert LatencyPredictor.load(path).learned_.overhead_ms == predictor_doc["overhead_ms"]


def test_a_whole_model_timed_over_an_hour_loads_back(predictor_doc, tmp_path):
    """A profile's ``whole`` rows hold what was timed, unbounded; the predictor fitted on them refused its own
    rest table past an hour.  Only a backbone's prediction stays under one."""
    slow = {"ms": 2 * HOUR_MS, "whole_ms": 2 * HOUR_MS + 20.0, "backbone_ms": 20.0, "calls": 1}
    path = tmp_path / "slow.json"
    path.write_text(json.dumps({**predictor_doc, "rest": {"Seg-0a1b2c3d4e5f|1x3x64x64|fp32|eager": slow}}))
    assert LatencyPredictor.load(path).learned_.rest["Seg-0a1b2c3d4e5f|1x3x64x64|fp32|eager"]["ms"] == 2 * HOUR_MS
    path.write_text(json.dumps({**predictor_doc, "rest": {"Seg": {**slow, "ms": -1.0}}}))
    with pytest.raises(DocumentError, match="'rest.Seg.ms' is -1"):
        LatencyPredictor.load(path)
