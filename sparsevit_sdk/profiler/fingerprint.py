"""Device probing: describe the device measured on now, as a fingerprint.

What a fingerprint is, which of its fields make its ``fingerprint_id`` and how two are
compared live in :mod:`sparsevit_sdk.dataset.fingerprint`; here the builder reads the
fields off the machine.  On the CPU the timing setup (thread count and clock, see
timing.py) is part of the identity: timings taken differently do not mix.

On NVIDIA the details come from NVML (``nvidia-ml-py``, imported lazily); where NVML is
missing (e.g. Jetson) torch's device properties fill in what they can.
"""

from __future__ import annotations

import logging
import os
import platform
import re
from datetime import datetime, timezone

import torch

from .._version import __version__
from ..dataset.files import check_hw
from ..dataset.fingerprint import fingerprint_id, identity
from ..devices import resolve_device

logger = logging.getLogger(__name__)

# CPU features that change kernel speed (x86 and ARM names as /proc/cpuinfo spells them)
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16",
              "asimd", "sve", "sve2")


def _cpuinfo() -> tuple[str, list[str]]:
    """CPU model name and perf-relevant ISA flags from /proc/cpuinfo (Linux), else platform."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and not name:
                    name = value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), [f for f in _ISA_FLAGS if f in flags]


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _cores() -> int:
    """Cores this process may run on (a container's share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _nvml(device: torch.device) -> dict:
    """Name, memory, clocks, power limit and driver from NVML; {} where NVML is unavailable."""
    try:
        import pynvml
    except ImportError:
        logger.warning("nvidia-ml-py is not installed; the GPU fingerprint lacks clocks and power limit")
        return {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        logger.warning("NVML is unavailable (%s); the GPU fingerprint lacks clocks and power limit", err)
        return {}
    try:
        uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
        try:  # by UUID: CUDA_VISIBLE_DEVICES renumbers CUDA devices but not NVML's
            handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{str(uuid).removeprefix('GPU-')}")
        except pynvml.NVMLError:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device.index)

        def get(fn, *args):
            try:
                value = fn(*args)
            except pynvml.NVMLError:
                return None
            return value.decode() if isinstance(value, bytes) else value

        power_mw = get(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        memory = get(pynvml.nvmlDeviceGetMemoryInfo, handle)
        return {
            "name": get(pynvml.nvmlDeviceGetName, handle),
            "memory_gib": None if memory is None else round(memory.total / 2**30, 1),
            "sm_clock_max_mhz": get(pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_max_mhz": get(pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_MEM),
            "sm_clock_mhz": get(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": get(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_MEM),
            "power_limit_w": None if power_mw is None else round(power_mw / 1000),
            "driver_version": get(pynvml.nvmlSystemGetDriverVersion),
        }
    except pynvml.NVMLError as err:
        logger.warning("NVML cannot find %s (%s); the GPU fingerprint lacks clocks and power limit", device, err)
        return {}
    finally:
        pynvml.nvmlShutdown()


def _cuda_fields(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    torch_fields = {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "cuda_version": torch.version.cuda,
    }
    nvml = {k: v for k, v in _nvml(device).items() if v is not None}
    fields = {"sm_clock_max_mhz": None, "mem_clock_max_mhz": None, "power_limit_w": None}
    return {**fields, **torch_fields, **nvml}


def default_hw(device: str | torch.device) -> str:
    """``cpu`` on the CPU; the GPU's name as a folder-safe slug on CUDA."""
    dev = resolve_device(device)
    if dev.type == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(dev).lower()).strip("-")


def device_fingerprint(
    device: str | torch.device = "cpu", *, hw: str | None = None, threads: int | None = None,
    clock: str = "wall", note: str = "",
) -> dict:
    """Describe ``device`` as measured now: identity fields, versions, and a ``fingerprint_id``.

    ``threads`` and ``clock`` say how CPU timings are taken (default: torch's current
    thread count, wall clock); ``note`` is free text kept in the sidecar.
    """
    dev = resolve_device(device)
    name, isa = _cpuinfo()
    fp = {
        "hw": check_hw(hw or default_hw(dev)),
        "device": str(dev),
        "device_type": dev.type,
        "name": name,
        "machine": platform.machine(),
        "cores": _cores(),
        "threads": threads or torch.get_num_threads(),
        "isa": isa,
        "clock": clock if dev.type == "cpu" else "cuda-events",
        "memory_gib": _memory_gib(),
        "cpu": name,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda_version": None,
        "sdk_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": note,
    }
    if dev.type == "cuda":
        fp.update(_cuda_fields(dev))
    fp["identity_fields"] = list(identity(fp))
    fp["fingerprint_id"] = fingerprint_id(fp)
    return fp
