"""search/validation.py: validating a result in a runtime, a whole model, threads from a file."""

from __future__ import annotations

import pytest

from sparsevit_sdk import (
    SearchResult,
    SearchSession,
    build_model,
)

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
    from sparsevit_sdk.accuracy import AgreementProxy, probe_images

    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    result = SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4,
                           parents=2, generations=0, progress=False).run()
    data = result.to_dict()
    data["predictor_info"]["threads"] = [10000]
    loaded = SearchResult.from_dict(data, model=build_model("swin_micro"))
    with pytest.raises(ValueError, match=r"measured with 10000 threads .* pass threads=N"):
        loaded.validate("cpu", repeats=1, warmup=0, rounds=1)
