"""Named deployment targets: published peak throughput and memory bandwidth, which predictor
file serves each, and whether that predictor was *measured* on the device or is only an
*estimate* (on a GPU: the cost model of ``predictor/gpu_model.py``, fitted to published
measurements, priced on these specs).

Peaks are dense (no 2:4 structured sparsity).  ``peak_fp16_tflops`` is the half-precision
rate that PyTorch reaches through tensor cores (fp32 accumulation); ``peak_fp32_tflops`` is
the plain fp32 rate.  A value that is not printed in a datasheet but computed from one is
marked ``derived`` in its comment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ._data import shipped_predictors


@dataclass(frozen=True)
class HardwareSpec:
    """Published numbers of one target: what the GPU cost model prices units on."""

    name: str
    description: str
    kind: str  # "cpu" or "gpu"
    peak_fp32_tflops: float
    peak_fp16_tflops: float
    mem_bw_gbs: float
    default_dtype: str  # what a deployment on this target runs: the dtype estimates assume

    def peak_tflops(self, dtype: str) -> float:
        return self.peak_fp32_tflops if dtype == "fp32" else self.peak_fp16_tflops


@dataclass(frozen=True)
class Hardware:
    """A target as the search sees it: its spec, its predictor file (or None) and whether
    predictions for it are ``estimated`` (no measured predictor exists)."""

    spec: HardwareSpec
    predictor: Path | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def estimated(self) -> bool:
        return self.predictor is None

    def __str__(self) -> str:
        source = f"measured predictor {self.predictor.name}" if self.predictor else "estimated from specs"
        return f"{self.name} ({self.spec.description}; {source})"


# A second measured CPU (profiles/intel-xeon-amx): a 2-vCPU Intel Xeon VM with AVX-512
# and AMX whose model the hypervisor hides, so the peaks are measured, not published:
# torch's 2048^2 matmul on 2 threads reaches 0.40 TFLOPS fp32 and 2.97 TFLOPS bf16 (AMX);
# numpy copy 25.4 GB/s (2026-11-24, on a VM of the same kind).
_XEON = HardwareSpec("intel-xeon-amx", "2-vCPU Intel Xeon (AVX-512, AMX) VM", "cpu", 0.40, 2.97, 25.4, "fp32")

_SPECS = [
    # The reference CPU the shipped profiles were measured on: a 2-vCPU KVM slice of an AMD
    # EPYC (Zen 3, family 25 model 1).  Peak derived: 2 cores x 3.5 GHz boost x 32 fp32
    # FLOP/cycle (two 256-bit FMA pipes) = 224 GFLOP/s; torch reaches 182 GFLOP/s on a
    # 2048^2 matmul here.  Bandwidth measured (numpy copy, 17.7 GB/s): a tenant of a shared
    # socket does not see the published 204.8 GB/s of 8-channel DDR4-3200.
    HardwareSpec("cpu", "2-vCPU AMD EPYC (Zen 3) VM", "cpu", 0.224, 0.224, 17.7, "fp32"),
    _XEON,
    # The same VM timed as a deployment that uses all its cores: 2 threads, wall clock.
    replace(_XEON, name="intel-xeon-amx-2t", description="2-vCPU Intel Xeon (AVX-512, AMX) VM, both cores"),
    # NVIDIA Jetson AGX Orin 64GB module datasheet: 204.8 GB/s LPDDR5; GPU 170 sparse INT8
    # TOPS (the 275 TOPS total adds the DLAs).  fp16 tensor derived: dense INT8 = 170 / 2 =
    # 85 TOPS, fp16 = 85 / 2 = 42.5 TFLOPS (derived).  fp32 derived: 2048 CUDA cores x
    # 1.3 GHz x 2 = 5.3 TFLOPS (derived).
    HardwareSpec("jetson-orin", "NVIDIA Jetson AGX Orin 64GB", "gpu", 5.3, 42.5, 204.8, "fp16"),
    # NVIDIA A100 80GB SXM datasheet: fp32 19.5 TFLOPS, fp16 tensor 312 TFLOPS dense
    # (624 with sparsity), HBM2e 2,039 GB/s.
    HardwareSpec("a100", "NVIDIA A100 80GB SXM", "gpu", 19.5, 312.0, 2039.0, "fp16"),
    # NVIDIA H100 SXM datasheet: fp32 67 TFLOPS, fp16 tensor 1,979 TFLOPS with sparsity
    # = 989.5 dense, HBM3 3.35 TB/s.
    HardwareSpec("h100", "NVIDIA H100 SXM", "gpu", 67.0, 989.5, 3350.0, "fp16"),
    # NVIDIA RTX A6000 datasheet: fp32 38.7 TFLOPS, tensor 309.7 TFLOPS with sparsity =
    # 154.8 dense (derived), 768 GB/s GDDR6.
    HardwareSpec("rtx-a6000", "NVIDIA RTX A6000", "gpu", 38.7, 154.8, 768.0, "fp16"),
    # NVIDIA T4 datasheet: fp32 8.1 TFLOPS, mixed-precision fp16/fp32 65 TFLOPS, 320 GB/s.
    HardwareSpec("t4", "NVIDIA T4", "gpu", 8.1, 65.0, 320.0, "fp16"),
    # NVIDIA Ampere GA102 whitepaper (RTX 3090): fp32 35.6 TFLOPS; fp16 tensor with fp32
    # accumulate 71 TFLOPS dense (142 with fp16 accumulate); 936 GB/s GDDR6X.
    HardwareSpec("rtx-3090", "NVIDIA GeForce RTX 3090", "gpu", 35.6, 71.0, 936.0, "fp16"),
    # GPUs with published Swin figures in predictors/published_gpu_latency.csv.
    # V100 PCIe 16GB (the Swin/DeiT papers' "16GB V100"): fp32 14.13 TFLOPS, 897 GB/s HBM2
    # (sysrqmts.com GPU database); fp16 tensor 112 TFLOPS (NVIDIA V100 datasheet, PCIe).
    HardwareSpec("v100", "NVIDIA Tesla V100 PCIe 16GB", "gpu", 14.13, 112.0, 897.0, "fp16"),
    # A100 40GB: NVIDIA FasterTransformer's table names a 1215 MHz memory clock, the 40GB
    # part's HBM2: 1215 MHz x 2 x 5120 bit / 8 = 1,555 GB/s (derived; sysrqmts.com lists
    # 1,555 GB/s); compute as the 80GB part (same GA100 at 1410 MHz).
    HardwareSpec("a100-40gb", "NVIDIA A100 40GB", "gpu", 19.5, 312.0, 1555.0, "fp16"),
    # A10: fp32 31.24 TFLOPS, 600.2 GB/s GDDR6 (sysrqmts.com); fp16 tensor 125 TFLOPS dense
    # (NVIDIA A10 datasheet).
    HardwareSpec("a10", "NVIDIA A10", "gpu", 31.24, 125.0, 600.2, "fp16"),
    # RTX 4090: fp32 82.58 TFLOPS, fp16 tensor with fp32 accumulate 165.15 TFLOPS dense,
    # 1,008 GB/s (NVIDIA Ada whitepaper, via waredb.com).
    HardwareSpec("rtx-4090", "NVIDIA GeForce RTX 4090", "gpu", 82.58, 165.15, 1008.0, "fp16"),
    # RTX 5090: fp32 104.8 TFLOPS, 1,792 GB/s; fp16 tensor 838.4 TFLOPS is sparse with fp16
    # accumulate: dense fp32-accumulate = 838.4 / 2 / 2 = 209.6 (derived, assuming GeForce
    # halves fp32 accumulation as on Ada).
    HardwareSpec("rtx-5090", "NVIDIA GeForce RTX 5090", "gpu", 104.8, 209.6, 1792.0, "fp16"),
]
SPECS: dict[str, HardwareSpec] = {s.name: s for s in _SPECS}


def gpu_target(device_name: str) -> str | None:
    """The GPU target a CUDA device's name carries ("NVIDIA H100 80GB HBM3" → "h100"): the longest
    target name inside it, punctuation ignored; None if none is."""
    device = re.sub(r"[^a-z0-9]", "", device_name.lower())
    named = [s.name for s in SPECS.values() if s.kind == "gpu" and re.sub(r"[^a-z0-9]", "", s.name) in device]
    return max(named, key=len, default=None)


def list_hardware() -> list[str]:
    return list(SPECS)


def looks_like_file(name: str) -> bool:
    """Whether ``name`` was meant as a predictor file rather than a target name."""
    return Path(name).suffix == ".json" or "/" in name or os.sep in name


def get_hardware(name: str) -> Hardware:
    """The target called ``name``; its ``predictor`` is the shipped measured file, if any."""
    if name not in SPECS:
        hint = ""
        if looks_like_file(name):
            hint = (f"; for a predictor file ({'found' if Path(name).is_file() else 'not found'}) pass "
                    "hw=LatencyPredictor.load(path)")
        raise ValueError(f"unknown hardware {name!r}; known targets: {', '.join(list_hardware())}{hint}; for this "
                         "device, SearchSession(model, hw='local') or for_device(model, input_shape) calibrates one")
    return Hardware(SPECS[name], shipped_predictors().get(name))
