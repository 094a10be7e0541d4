"""dataset/schema.py: profile rows checked by type and meaning; the stable statistic."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sparsevit_sdk.dataset import SchemaError, dataset_path, load_profiles
from sparsevit_sdk.dataset.schema import LATENCY_COLUMNS, stable_statistic
from sparsevit_sdk.profiler import SweepSettings, profile_model
from sparsevit_sdk.profiler.timing import LatencyStats

from .conftest import _fit


def test_the_stable_statistic_is_p10_on_a_cpu_and_the_median_elsewhere():
    assert stable_statistic("cpu") == "p10_ms" and stable_statistic("cpu", profile=True) == "p10_ms"
    assert stable_statistic("cuda:0") == "median_ms" and stable_statistic("cuda", profile=True) == "latency_ms"
    assert stable_statistic("cpu", "cuda:0") == "median_ms"  # a mix is not a CPU
    stats = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0], threads=1, device="cpu")
    columns = stats.profile_columns()
    assert set(columns) == set(LATENCY_COLUMNS) and columns["latency_ms"] == stats.median_ms


def test_profiles_without_a_runtime_column_are_eager_and_unknown_runtimes_are_refused():
    from sparsevit_sdk.dataset.schema import SchemaError, validate_frame

    rows = load_profiles("profiles/cpu")
    old = rows.drop(columns="runtime")
    assert set(validate_frame(old)["runtime"]) == {"eager"}
    with pytest.raises(SchemaError, match="unknown runtime values \\['tensorrt'\\]"):
        validate_frame(rows.assign(runtime="tensorrt"))


@pytest.fixture(scope="module")
def profile_rows():

    return profile_model("swin_micro", resolutions=["112x112"], grid=(0.0, 0.5), progress=False,
                         settings=SweepSettings(warmup=0, repeats=1, model_repeats=1, random_configs=0, rounds=1))


@pytest.mark.parametrize(("column", "value", "message"), [
    ("p10_ms", True, "column 'p10_ms' row 0 holds a true/false value"),
    ("batch", 1.7, "column 'batch' row 0 is 1.7, expected a whole number"),
    ("windows_kept", 10_000, "keeps 10000 of .* windows"),
    ("dtype", "fp64", r"unknown dtype values \['fp64'\]"),
])
def test_profile_rows_are_checked_by_type_and_meaning(profile_rows, column, value, message):
    from sparsevit_sdk.dataset import SchemaError, validate_frame

    rows = profile_rows.copy()
    rows[column] = rows[column].astype(object)
    rows.loc[0, column] = value
    with pytest.raises(SchemaError, match=f"p.parquet: .*{message}"):
        validate_frame(rows, "p.parquet")


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
