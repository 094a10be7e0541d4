"""Device fingerprint: what a latency dataset was measured on.

A fingerprint is a flat JSON-able dict stored next to every dataset.  Its
``fingerprint_id`` hashes only the *identity* fields — the properties that make two
measurements comparable (chip, core count, CPU thread count, ISA; on NVIDIA memory,
max clocks and power limit).  Timestamps, driver/torch versions and current clocks are
recorded but left out of the id: they change between runs on the same device, and the
rows carry their own ``torch_version``.  On the CPU the timing setup (thread count and
clock, see timing.py) is part of the identity: timings taken differently do not mix.
The user's ``hw`` label is left out: it names a target, the id names the silicon and
its settings.

On NVIDIA the details come from NVML (``nvidia-ml-py``, imported lazily); where NVML is
missing (e.g. Jetson) torch's device properties fill in what they can.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
from collections.abc import Sequence
from datetime import datetime, timezone

import torch

from .._documents import Field, read_json
from .._version import __version__
from ..devices import resolve_device

logger = logging.getLogger(__name__)

CPU_IDENTITY = ("device_type", "name", "machine", "cores", "threads", "isa", "clock")
CUDA_IDENTITY = ("device_type", "name", "memory_gib", "compute_capability", "sm_clock_max_mhz",
                 "mem_clock_max_mhz", "power_limit_w")
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


def check_hw(hw: str) -> str:
    """``hw`` names a folder: letters, digits, ``.``, ``_`` and ``-`` only."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", hw or ""):
        raise ValueError(f"hw name {hw!r} must be letters, digits, '.', '_' or '-' (e.g. 'jetson-orin')")
    return hw


def identity(fingerprint: dict) -> dict:
    """The fields that decide whether two fingerprints are the same measuring device."""
    keys = CUDA_IDENTITY if fingerprint["device_type"] == "cuda" else CPU_IDENTITY
    return {k: fingerprint.get(k) for k in keys}


def fingerprint_id(fingerprint: dict, fields: Sequence[str] | None = None) -> str:
    """Short hash of the identity fields: today's (:func:`identity`), or the ``fields`` a
    stored fingerprint names, which keeps the id of a sidecar from an earlier version."""
    values = identity(fingerprint) if fields is None else {k: fingerprint.get(k) for k in fields}
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_fingerprint(path: str | os.PathLike) -> dict:
    """The fingerprint stored at ``path``, once its stored id is the hash of its content.

    The id is what keeps devices apart; a sidecar edited by hand (``"name": "NVIDIA A100"``
    over CPU rows) would otherwise lend its rows, and a predictor fitted on them, another
    device's description.
    """
    fix = "restore the file, or re-profile the device with `sparsevit-profile` into a new folder"
    source = str(path)
    data = read_json(path, what="device fingerprint", fix=fix)
    doc = Field(data, source=source, what="device fingerprint", fix=fix)
    stored = doc["fingerprint_id"].text()
    doc["device_type"].text()
    fields = ([f.text() for f in doc["identity_fields"].elements(nonempty=True)] if "identity_fields" in data
              else list(identity(data)))
    actual = fingerprint_id(data, fields)
    if stored != actual:
        raise doc["fingerprint_id"].error(
            f"is {stored!r}, but the identity fields ({', '.join(fields)}) hash to {actual!r}: "
            "the file was edited or damaged")
    return data


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


def describe_mismatch(old: dict, new: dict) -> str:
    """``field: old -> new`` for every identity field that differs."""
    a, b = identity(old) if "device_type" in old else {}, identity(new)
    return ", ".join(f"{k}: {a.get(k)!r} -> {b[k]!r}" for k in b if a.get(k) != b[k])
