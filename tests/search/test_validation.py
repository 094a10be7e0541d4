"""search/validation.py: validating a result in a runtime, a whole model, threads from a file."""

from __future__ import annotations

import pytest

from sparsevit_sdk import (
    SearchResult,
    SearchSession,
    build_model,
)
from sparsevit_sdk.search.validation import ValidationReport

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

@pytest.mark.slow
def test_validate_in_onnx_runtime(micro):
    shape = (1, 3, 64, 64)
    result = SearchSession(micro, "cpu", proxy=lambda cfg: -sum(cfg.ratios), input_shape=shape, latency_budget=0.9,
                           population=4, parents=2, generations=1, progress=False).run()
    report = result.validate("cpu", runtime="onnxruntime", repeats=2, warmup=1, rounds=1)
    assert report.runtime == "onnxruntime" and report.clock == "wall" and not report.comparable
    assert report.dense_ms > 0 and report.sparse_ms > 0 and "in onnxruntime" in str(report)
    assert "predicted for eager" in report.note
    assert micro.block_sparsity == [[0.0] * d for d in micro.depths] and not micro.training


SHAPE = (1, 3, 112, 112)


def test_validation_refuses_a_thread_count_from_a_file_beyond_this_machine(tmp_path, micro):
    from sparsevit_sdk import SearchSession
    from sparsevit_sdk.accuracy import AgreementProxy
    from sparsevit_sdk.demo import probe_images

    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    result = SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4,
                           parents=2, generations=0, progress=False).run()
    data = result.to_dict()
    data["predictor_info"]["threads"] = [10000]
    loaded = SearchResult.from_dict(data, model=build_model("swin_micro"))
    with pytest.raises(ValueError, match=r"measured with 10000 threads .* pass threads=N"):
        loaded.validate("cpu", repeats=1, warmup=0, rounds=1)


def _report(**changes) -> ValidationReport:
    fields = dict(device="cpu", hw="local", statistic="p10_ms", threads=1, clock="cpu", dense_ms=20.0, sparse_ms=14.0,
                  dense_predicted_ms=21.0, predicted_ms=14.5, dense_rounds_ms=(20.0, 20.4),
                  sparse_rounds_ms=(14.0, 14.2), comparable=True, note="", expected_mape=6.0)
    return ValidationReport(**{**fields, **changes})


def test_the_report_says_whether_the_measurement_fell_inside_the_predictors_band():
    assert _report().inside_band and "(inside the predictor's ± 6.0 %)" in str(_report())
    off = _report(sparse_ms=12.0, sparse_rounds_ms=(12.0, 12.1))  # 17 % under its prediction
    assert off.inside_band is False and "(OUTSIDE the predictor's ± 6.0 %)" in str(off)
    assert _report(comparable=False).inside_band is None and _report(expected_mape=None).inside_band is None
    assert "predictor's ±" not in str(_report(expected_mape=None))


def test_the_report_names_rounds_that_disagree():
    assert "rounds spread" not in str(_report())
    busy = _report(sparse_rounds_ms=(14.0, 21.0))
    assert busy.spread == 1.5 and "rounds spread 1.50x" in str(busy)


def test_the_report_says_when_the_machine_runs_at_another_speed_than_when_calibrated():
    assert "slower than when the predictor was calibrated" in str(_report(machine_speed=1.3))
    assert "25% faster" in str(_report(machine_speed=0.75))
    assert "reference workload" not in str(_report(machine_speed=1.05)) + str(_report())
