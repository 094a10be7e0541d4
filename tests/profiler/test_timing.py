"""measure_latency and device handling."""

from __future__ import annotations

import time

import pytest
import torch

from sparsevit_sdk import build_model, measure_latency
from sparsevit_sdk.devices import resolve_device
from sparsevit_sdk.profiler import (
    time_callable,
)

from ..conftest import requires_cuda


def test_stats_are_ordered_and_counted(micro):
    stats = measure_latency(micro, (1, 3, 64, 64), warmup=1, repeats=5, threads=1)
    assert stats.repeats == 5 and stats.threads == 1 and stats.device == "cpu"
    assert 0 < stats.min_ms <= stats.p10_ms <= stats.median_ms <= stats.p90_ms


def test_threads_are_restored():
    before = torch.get_num_threads()
    time_callable(lambda: None, "cpu", warmup=0, repeats=1, threads=1)
    assert torch.get_num_threads() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_explained(micro):
    with pytest.raises(ValueError, match="CUDA is not available"):
        measure_latency(micro, (1, 3, 64, 64), device="cuda:0")


@pytest.mark.parametrize("bad", ["tpu", "gpu0", "cuda:x"])
def test_unknown_device_is_explained(bad):
    with pytest.raises(ValueError, match="cpu' or 'cuda:N'"):
        resolve_device(bad)


def test_bad_input_shape(micro):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        measure_latency(micro, (3, 64, 64))


@requires_cuda
def test_cuda_timing_runs():
    stats = measure_latency(build_model("swin_micro"), (1, 3, 64, 64), device="cuda:0", repeats=3)
    assert stats.device == "cuda:0" and stats.median_ms > 0


def test_cpu_clock_leaves_out_time_off_the_cpu():
    """Sleeping stands for waiting while other processes hold the core."""
    wall = time_callable(lambda: time.sleep(0.02), "cpu", warmup=0, repeats=2, threads=1)
    cpu = time_callable(lambda: time.sleep(0.02), "cpu", warmup=0, repeats=2, threads=1, clock="cpu")
    assert wall.min_ms >= 19 and cpu.median_ms < 5


@pytest.mark.parametrize("dtype", ["bf16", torch.bfloat16])
def test_measure_latency_takes_a_dtype_by_name_or_as_torch_dtype(dtype):
    model = build_model("swin_micro")
    stats = measure_latency(model, (1, 3, 64, 64), dtype=dtype, warmup=0, repeats=1)
    assert stats.p10_ms > 0 and next(model.parameters()).dtype == torch.float32  # timed in bf16, left as it was
    with pytest.raises(ValueError, match=r"unknown dtype 'int8'; use one of fp32, fp16, bf16"):
        measure_latency(model, (1, 3, 64, 64), dtype="int8")


def test_an_unsteady_measurement_says_why():
    from sparsevit_sdk.profiler.timing import LatencyStats, unsteady, usable_cores

    steady = LatencyStats.from_samples([11.5, 11.6, 11.5, 11.7, 11.6], threads=1, device="cpu")
    assert steady.spread < 1.05 and unsteady(steady) == []
    busy = LatencyStats.from_samples([526, 700, 900, 1150, 1100], threads=usable_cores() + 1, device="cpu")
    kinds = dict(unsteady(busy))
    assert set(kinds) == {"oversubscribed", "spread"} and f"on {usable_cores()} usable cores" in kinds["oversubscribed"]
    assert "p10_ms" in kinds["spread"] and busy.spread > 1.5


def test_measure_latency_warns_once_when_threads_outnumber_the_cores(micro, caplog, monkeypatch):
    from sparsevit_sdk import _logs
    from sparsevit_sdk.profiler import timing

    monkeypatch.setattr(_logs, "_SAID", set())
    monkeypatch.setattr(timing, "usable_cores", lambda: 1)  # as on a one-core machine, whatever this one has
    with caplog.at_level("WARNING", logger=timing.__name__):
        for _ in range(2):
            measure_latency(micro, (1, 3, 64, 64), threads=2, warmup=0, repeats=2)
    said = [r.getMessage() for r in caplog.records if "usable cores" in r.getMessage()]
    assert len(said) == 1 and "2 threads on 1 usable cores" in said[0]
