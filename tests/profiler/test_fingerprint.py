"""profiler/fingerprint.py: probing the device."""

from __future__ import annotations

import json

import torch

from sparsevit_sdk.profiler import (
    SweepSettings,
    device_fingerprint,
)

from ..conftest import requires_cuda
from .test_sweep import _profile

FAST = SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=3)


GRID = (0.0, 0.5)


def test_cpu_fingerprint_fields_and_stable_id():
    a = device_fingerprint("cpu", threads=1)
    b = device_fingerprint("cpu", hw="jetson-orin", threads=1, note="another label, same silicon")
    assert a["device_type"] == "cpu" and a["name"] and a["cores"] >= 1 and a["threads"] == 1
    assert a["torch_version"] == torch.__version__ and a["sdk_version"]
    assert a["fingerprint_id"] == b["fingerprint_id"]  # hw label, note, timestamp are not identity
    assert device_fingerprint("cpu", threads=2)["fingerprint_id"] != a["fingerprint_id"]
    json.dumps(a)


@requires_cuda
def test_cuda_fingerprint_and_sweep(tmp_path):
    fp = device_fingerprint("cuda:0")
    assert fp["device_type"] == "cuda" and fp["name"] and fp["memory_gib"] > 0 and fp["cuda_version"]
    assert {"sm_clock_max_mhz", "power_limit_w", "driver_version"} <= set(fp)
    rows = _profile(tmp_path, device="cuda:0")
    assert (rows["device"] == "cuda:0").all() and (rows["p10_ms"] > 0).all()
