"""LatencyPredictor follows scikit-learn's conventions; the stable statistic has one home."""

import numpy as np
import pytest
import sklearn.exceptions

from sparsevit_sdk.config import SearchSpace
from sparsevit_sdk.dataset.schema import LATENCY_COLUMNS, stable_statistic
from sparsevit_sdk.models import build_model
from sparsevit_sdk.predictor import LatencyPredictor
from sparsevit_sdk.profiler.timing import LatencyStats

SHAPE = (1, 3, 64, 64)


@pytest.mark.parametrize("call", [
    lambda p: p.hardware, lambda p: p.to_dict(), lambda p: p.save("never.json"),
    lambda p: p.predict_config(build_model("swin_micro"), None, SHAPE)])
def test_unfitted_predictor_raises_sklearns_not_fitted_error(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(sklearn.exceptions.NotFittedError, match="not fitted"):
        call(LatencyPredictor())
    assert not (tmp_path / "never.json").exists()


def test_learned_attributes_are_written_in_one_place():
    with pytest.raises(TypeError, match="missing"):
        LatencyPredictor()._set_learned(scale_=1.0)  # a first write sets every learned attribute
    with pytest.raises(TypeError, match="unknown"):
        LatencyPredictor.load("cpu")._set_learned(scale=1.0)


def test_changing_unit_scales_empties_the_cost_tables():
    predictor = LatencyPredictor.load("cpu")
    model = build_model("swin_micro")
    dense = SearchSpace.from_model(model).dense()
    before = predictor.predict_config(model, dense, SHAPE)
    predictor._set_learned(unit_scale_={"*": [[0.0, 2.0]]})
    after = predictor.predict_config(model, dense, SHAPE)
    scale = predictor.scale_["v1"]
    units = (before - predictor.overhead_ms_) / scale
    assert np.isclose(after, scale * 2 * units + predictor.overhead_ms_)


def test_the_stable_statistic_is_p10_on_a_cpu_and_the_median_elsewhere():
    assert stable_statistic("cpu") == "p10_ms" and stable_statistic("cpu", profile=True) == "p10_ms"
    assert stable_statistic("cuda:0") == "median_ms" and stable_statistic("cuda", profile=True) == "latency_ms"
    assert stable_statistic("cpu", "cuda:0") == "median_ms"  # a mix is not a CPU
    stats = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0], threads=1, device="cpu")
    columns = stats.profile_columns()
    assert set(columns) == set(LATENCY_COLUMNS) and columns["latency_ms"] == stats.median_ms
