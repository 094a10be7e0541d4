"""runtimes.py: timing in eager, compiled and ONNX Runtime; a sparse model compiles as one graph."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import (
    measure_latency,
    search_space,
    set_sparsity,
    sparse_backbone,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

def test_sparse_model_compiles_as_one_graph(micro):
    """fullgraph=True: no graph break (no .item(), host sync or data-dependent Python branch) in the forward."""
    set_sparsity(micro, search_space(micro).uniform(0.5))
    try:
        x = torch.randn(2, 3, 97, 130)
        with torch.no_grad():
            expected = micro(x)
            torch._dynamo.reset()
            got = torch.compile(micro, fullgraph=True, backend="aot_eager")(x)
    finally:
        set_sparsity(micro, search_space(micro).dense())
        torch._dynamo.reset()
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)
    assert sparse_backbone(micro) is micro


@pytest.mark.parametrize("runtime", [pytest.param("onnxruntime", marks=pytest.mark.slow), "compiled"])
def test_measure_latency_in_a_runtime(micro, runtime):
    set_sparsity(micro, search_space(micro).uniform(0.5))
    try:
        stats = measure_latency(micro, (1, 3, 64, 64), runtime=runtime, warmup=1, repeats=2, threads=1)
    finally:
        set_sparsity(micro, search_space(micro).dense())
        torch._dynamo.reset()
    assert stats.p10_ms > 0 and stats.threads == 1


def test_runtimes_refuse_what_they_cannot_time(micro):
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        measure_latency(micro, (1, 3, 64, 64), runtime="tensorrt")
    with pytest.raises(ValueError, match="clock='wall'"):
        measure_latency(micro, (1, 3, 64, 64), runtime="onnxruntime", clock="cpu", threads=1)
