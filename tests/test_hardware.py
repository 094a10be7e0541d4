"""hardware.py: known targets and estimated ones."""

from __future__ import annotations

import logging

import pytest

from sparsevit_sdk import LatencyPredictor, build_model, search_space
from sparsevit_sdk.hardware import get_hardware, list_hardware

SHAPE = (1, 3, 96, 96)


def test_unknown_hardware_lists_known_targets():
    known = "known targets: cpu, intel-xeon-amx, intel-xeon-amx-2t, jetson-orin.*hw='local'"
    with pytest.raises(ValueError, match=known):
        get_hardware("tpu-v9")
    with pytest.raises(ValueError, match="unknown hardware 'tpu-v9'"):
        LatencyPredictor.for_hardware("tpu-v9")


def test_estimated_targets_are_flagged(shipped, caplog):
    assert get_hardware("cpu").predictor == shipped and not get_hardware("cpu").estimated
    assert not LatencyPredictor.for_hardware("cpu").estimated
    model = build_model("swin_micro")
    dense = search_space(model).dense()
    ms = {}
    for name in [n for n in list_hardware() if get_hardware(n).spec.kind == "gpu"]:
        assert get_hardware(name).estimated and get_hardware(name).predictor is None
        with caplog.at_level(logging.WARNING):
            est = LatencyPredictor.for_hardware(name)
        assert est.estimated and est.hw == name and "estimated" in repr(est)
        assert "estimated" in caplog.text and name in caplog.text
        ms[name] = est.predict_config(model, SHAPE, dense)
    assert all(v > 0 for v in ms.values())
    assert ms["h100"] <= ms["a100"] <= ms["t4"]  # more compute, more bandwidth: never slower
    with pytest.raises(ValueError, match="CPU target 'intel-xeon-amx'.*hw='local'"):
        LatencyPredictor.for_hardware("intel-xeon-amx")  # its file is not shipped in this fixture


def test_a_cuda_device_name_maps_to_the_target_it_carries():
    from sparsevit_sdk.hardware import gpu_target

    assert gpu_target("NVIDIA H100 80GB HBM3") == "h100" and gpu_target("NVIDIA RTX A6000") == "rtx-a6000"
    assert gpu_target("NVIDIA A100-SXM4-80GB") == "a100"  # a10 is inside the name too: the longest wins
    assert gpu_target("Some Accelerator") is None
