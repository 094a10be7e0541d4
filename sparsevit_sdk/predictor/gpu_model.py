"""A per-unit GPU cost model whose few constants are fitted to *published* Swin latencies.

Why: a GPU target nobody has profiled used to be estimated by rescaling a CPU predictor with
the ratio of two rooflines, which no measurement ever checked.  A CPU's unit times say little
about a GPU's, where small units are bound by kernel launches and large ones by memory
traffic.  This model instead prices every unit of a config directly on the target's
published peaks:

    t(unit) = max(FLOPs / (peak(dtype) * e_compute[dtype class]),
                  bytes / (bandwidth * e_memory[runtime])) + kernels(unit) * launch_us[runtime]

summed over :func:`features.config_units` with their ``weight`` column.  FLOPs and bytes come
from :func:`arch.unit_costs`, kernels per unit from :data:`transfer.OPS_PER_UNIT`.  The six
constants are shared by every GPU (that is what lets a figure measured on one GPU say
something about another) and are fitted by least squares on the log of measured / predicted
to the figures in ``predictors/published_gpu_latency.csv`` (timm's benchmark CSVs, NVIDIA
FasterTransformer's Swin tables, the Swin paper's V100 throughputs).

A throughput figure ``img/s`` at batch ``B`` is compared as a per-batch latency
``1000 * B / (img/s)`` ms: a throughput benchmark times whole batches back to back.

Runtimes: ``eager`` (PyTorch eager, and TorchScript traces, which launch one kernel per op
much like eager) and ``compiled`` (``torch.compile``: fused elementwise ops move fewer bytes
and launch fewer kernels, so it gets its own memory efficiency and launch cost).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from .._data import data_dir
from ..arch import Architecture, unit_costs
from ..hardware import SPECS, HardwareSpec
from .features import config_units

__all__ = ["OPS_PER_UNIT", "FIGURE_RUNTIMES", "TIMM_SIGNATURES", "GpuConstants", "GpuCostModel", "load_published",
           "published_model", "published_path", "unit_ms"]

# kernels eager PyTorch launches per unit (counted from the kernels' forward code): what the
# launch cost multiplies
OPS_PER_UNIT = {"patch_embed": 4, "patch_merge": 6, "score": 12, "block_pair": 50, "norm": 1}

DTYPE_CLASS = {"fp32": "fp32", "fp16": "half", "bf16": "half"}  # bf16 runs at the fp16 tensor rate
# the runtimes of published figures, by the runtime the cost model prices them as
FIGURE_RUNTIMES = {"eager": "eager", "torchscript": "eager", "compiled": "compiled"}

# published Swin names → signatures (same shapes as the registry's swin_t / swin_s / swin_b at window 7)
TIMM_SIGNATURES = {
    "swin_tiny_patch4_window7_224": "swin-e96-d2.2.6.2-h3.6.12.24-w7-p4",
    "swin_small_patch4_window7_224": "swin-e96-d2.2.18.2-h3.6.12.24-w7-p4",
    "swin_base_patch4_window7_224": "swin-e128-d2.2.18.2-h4.8.16.32-w7-p4",
    "swin_large_patch4_window7_224": "swin-e192-d2.2.18.2-h6.12.24.48-w7-p4",
    "swin_base_patch4_window12_384": "swin-e128-d2.2.18.2-h4.8.16.32-w12-p4",
    "swin_large_patch4_window12_384": "swin-e192-d2.2.18.2-h6.12.24.48-w12-p4",
}

def published_path() -> Path:
    """The shipped table of published Swin latencies and throughputs."""
    return data_dir("predictors") / "published_gpu_latency.csv"


def load_published(path: str | Path | None = None, *, fittable: bool = True,
                   specs: Mapping[str, HardwareSpec] | None = None, assumed_batch: int = 128) -> pd.DataFrame:
    """The published figures, with ``signature`` and ``latency_ms`` (per batch) columns.

    ``fittable`` keeps the rows :meth:`GpuCostModel.fit` can use: a dtype it models (not
    tf32), a GPU with a spec, a known model.  A row without a batch (the Swin paper's V100
    throughputs) gets ``assumed_batch`` (the Swin repo's default loader batch) and
    ``batch_assumed=True``: at that size a throughput is nearly flat in the batch."""
    df = pd.read_csv(path or published_path())
    if df.empty or df["source"].isna().any():
        raise ValueError(f"{path or published_path()}: every published figure needs a source")
    df["batch_assumed"] = df["batch"].isna()
    df["batch"] = df["batch"].fillna(assumed_batch).astype(int)
    df["signature"] = df["model"].map(TIMM_SIGNATURES)
    per_batch = np.where(df["unit"] == "img/s", 1000.0 * df["batch"] / df["value"], df["value"])
    df["latency_ms"] = np.where(df["unit"].isin(["img/s", "ms/batch"]), per_batch, np.nan)
    if fittable:
        known = {**SPECS, **(specs or {})}
        keep = (df["dtype"].isin(list(DTYPE_CLASS)) & df["gpu"].isin(list(known)) & df["signature"].notna()
                & df["runtime"].isin(list(FIGURE_RUNTIMES)) & df["latency_ms"].notna())
        df = df[keep]
    return df.reset_index(drop=True)


@dataclass
class GpuConstants:
    """The fitted constants (JSON-able): efficiencies are fractions of the published peak (a
    memory efficiency above 1 means the analytic byte count overstates the traffic, e.g. data
    reused from L2), launch costs are microseconds per kernel of :data:`OPS_PER_UNIT`."""

    e_compute_half: float = 0.5
    e_compute_fp32: float = 0.5
    e_memory_eager: float = 0.5
    e_memory_compiled: float = 0.5
    launch_us_eager: float = 8.0
    launch_us_compiled: float = 2.0

    def to_vector(self) -> np.ndarray:
        return np.log([getattr(self, f.name) for f in fields(self)])

    @classmethod
    def from_vector(cls, theta: np.ndarray) -> GpuConstants:
        return cls(*(float(v) for v in np.exp(theta)))




def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPE_CLASS:
        raise ValueError(f"unknown dtype {dtype!r}: the GPU cost model prices {sorted(DTYPE_CLASS)}; "
                         "tf32 or int8 figures must be dropped (load_published(fittable=True) does)")
    return DTYPE_CLASS[dtype]


def _check_runtime(runtime: str) -> str:
    if runtime not in FIGURE_RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; use one of {sorted(FIGURE_RUNTIMES)}")
    return FIGURE_RUNTIMES[runtime]


def unit_ms(constants: GpuConstants, units: pd.DataFrame, spec: HardwareSpec, runtime: str = "eager") -> np.ndarray:
    """Milliseconds of every unit row (profile-schema descriptors, any dtype it prices) on ``spec``."""
    flops, moved = unit_costs(units)
    half = np.array([_check_dtype(d) == "half" for d in units["dtype"]])
    peak = np.where(half, spec.peak_fp16_tflops, spec.peak_fp32_tflops) * 1e12
    e_compute = np.where(half, constants.e_compute_half, constants.e_compute_fp32)
    if _check_runtime(runtime) == "eager":
        e_memory, launch_us = constants.e_memory_eager, constants.launch_us_eager
    else:
        e_memory, launch_us = constants.e_memory_compiled, constants.launch_us_compiled
    kernels = units["layer"].map(OPS_PER_UNIT).to_numpy(float)
    seconds = np.maximum(flops / (peak * e_compute), moved / (spec.mem_bw_gbs * 1e9 * e_memory))
    return 1e3 * seconds + kernels * launch_us * 1e-3


def _config_ms(constants: GpuConstants, units: pd.DataFrame, spec: HardwareSpec, runtime: str) -> float:
    return float(np.dot(units["weight"].to_numpy(float), unit_ms(constants, units, spec, runtime)))


class GpuCostModel:
    """Per-unit roofline plus launch cost on a GPU's published specs; see the module docstring.

    ``prior_weight`` pulls every log-constant toward :class:`GpuConstants`' defaults, so a
    constant the figures do not pin down (fp32 compute from few fp32 rows, launch cost from
    large-batch throughputs) stays at a plausible value instead of drifting."""

    def __init__(self, prior_weight: float = 0.1, prior: GpuConstants | None = None):
        self.prior_weight = prior_weight
        self.prior = prior or GpuConstants()
        self.constants_: GpuConstants | None = None
        self.fit_report_: dict = {}

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, figures: pd.DataFrame, specs: Mapping[str, HardwareSpec] | None = None) -> GpuCostModel:
        """Fit the constants to ``figures`` (rows of :func:`load_published`: ``gpu``,
        ``signature``, ``img_size``, ``batch``, ``dtype``, ``runtime``, ``latency_ms``)."""
        if figures is None or len(figures) == 0:
            raise ValueError("no published figures to fit: pass load_published() (or a non-empty subset of it)")
        known = {**SPECS, **(specs or {})}
        missing = sorted(set(figures["gpu"]) - set(known))
        if missing:
            raise ValueError(f"no HardwareSpec for GPUs {missing}: pass specs={{name: HardwareSpec(...)}}")
        cases = []
        for row in figures.itertuples(index=False):
            _check_dtype(row.dtype)
            arch = Architecture.from_signature(row.signature)
            shape = (int(row.batch), arch.in_chans, int(row.img_size), int(row.img_size))
            dense = [[0.0] * d for d in arch.depths]
            cases.append((config_units(arch, shape, row.dtype, dense), known[row.gpu], _check_runtime(row.runtime)))
        y = np.log(figures["latency_ms"].to_numpy(float))
        prior = self.prior.to_vector()
        w = math.sqrt(self.prior_weight)

        def residuals(theta: np.ndarray) -> np.ndarray:
            c = GpuConstants.from_vector(theta)
            pred = np.log([_config_ms(c, units, spec, runtime) for units, spec, runtime in cases])
            return np.concatenate([pred - y, w * (theta - prior)])

        start = prior.copy()
        result = least_squares(residuals, start, bounds=(np.log(1e-4), np.log(1e4)), x_scale=1.0)
        self.constants_ = GpuConstants.from_vector(result.x)
        err = np.exp(result.fun[:len(y)]) - 1.0
        self.fit_report_ = {"figures": int(len(y)), "median_abs_error": float(np.median(np.abs(err))),
                            "max_abs_error": float(np.max(np.abs(err)))}
        return self

    # -- prediction ----------------------------------------------------------------------------

    def predict_ms(self, arch: Architecture, input_shape: Sequence[int], dtype: str,
                   block_sparsity: Sequence[Sequence[float]], spec: HardwareSpec, runtime: str = "eager") -> float:
        """Milliseconds for one forward of ``input_shape`` (a whole batch) on ``spec``."""
        if self.constants_ is None:
            raise ValueError("GpuCostModel is not fitted: call fit(load_published()) or from_dict(...) first")
        if spec.kind != "gpu":
            raise ValueError(f"{spec.name!r} is a {spec.kind}, the GPU cost model prices GPUs only")
        return _config_ms(self.constants_, config_units(arch, input_shape, dtype, block_sparsity), spec, runtime)

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"prior_weight": self.prior_weight, "prior": asdict(self.prior),
                "constants": None if self.constants_ is None else asdict(self.constants_),
                "fit_report": self.fit_report_}

    @classmethod
    def from_dict(cls, data: dict) -> GpuCostModel:
        model = cls(data["prior_weight"], GpuConstants(**data["prior"]))
        if data.get("constants"):
            model.constants_ = GpuConstants(**data["constants"])
        model.fit_report_ = dict(data.get("fit_report", {}))
        return model

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@functools.lru_cache(maxsize=1)
def published_model() -> GpuCostModel:
    """The cost model fitted to every shipped published figure (about a second, once per process)."""
    return GpuCostModel().fit(load_published())
