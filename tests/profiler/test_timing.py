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
