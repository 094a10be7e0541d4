"""Moving a predictor to other hardware: a spec-based estimate for a target nobody has
profiled (the roofline ratio of published specs, floored by the per-op host cost), and
calibration of any predictor to a device from a few of its measurements."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from ..dataset.schema import validate_frame
from ..hardware import SPECS, get_hardware
from .features import unit_costs
from .rows import model_key, model_units, one_device, runnable, with_mlp_ratio

if TYPE_CHECKING:
    from .latency import LatencyPredictor

logger = logging.getLogger(__name__)

# eager PyTorch ops per unit: with HardwareSpec.op_overhead_us, the floor of a unit on a GPU
OPS_PER_UNIT = {"patch_embed": 4, "patch_merge": 6, "score": 12, "block_pair": 50, "norm": 1}


def calibration_group(layer: str, stage: int) -> str:
    """Block pairs are scaled per stage (their shapes, and so their efficiency, differ most);
    the small units share one scale."""
    return f"block_pair/{stage}" if layer == "block_pair" else "rest"


def source_rows(predictor: LatencyPredictor, layers: pd.DataFrame) -> pd.DataFrame:
    """Unit rows as the device the boosters were fitted on ran them (an estimate's source dtype)."""
    return layers if predictor.estimate_ is None else layers.assign(dtype=predictor.estimate_["source_dtype"])


def to_target(predictor: LatencyPredictor, ms: np.ndarray, source: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
    """Booster ms of the ``source`` rows → ms of the ``target`` rows on ``predictor``'s device:
    the roofline rescale of an estimate, then the unit scales of calibration."""
    if predictor.estimate_ is not None:
        ms = _rescale(predictor.estimate_, ms, source, target)
    if predictor.unit_scale_:
        default = predictor.unit_scale_.get("*", 1.0)
        ms = ms * [predictor.unit_scale_.get(calibration_group(k, s), default)
                   for k, s in zip(target["layer"], target["stage"])]
    return ms


def _rescale(estimate: dict, ms: np.ndarray, source: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
    """Source-device unit ms → target, by the ratio of the two roofline times, floored by
    the target's per-op host cost."""
    def roofline(units: pd.DataFrame, spec: dict) -> np.ndarray:
        flops, moved = unit_costs(units)
        peak = np.where(units["dtype"] == "fp32", spec["peak_fp32_tflops"], spec["peak_fp16_tflops"]) * 1e12
        return np.maximum(flops / peak, moved / (spec["mem_bw_gbs"] * 1e9))

    target_spec = estimate["target_spec"]
    ms = ms * roofline(target, target_spec) / roofline(source, estimate["source_spec"])
    floor = target["layer"].map(OPS_PER_UNIT).to_numpy(float) * target_spec["op_overhead_us"] / 1e3
    return np.maximum(ms, floor)


def for_hardware(cls: type[LatencyPredictor], name: str, shipped: dict[str, Path]) -> LatencyPredictor:
    """See :meth:`LatencyPredictor.for_hardware`; ``shipped``: the shipped predictor files by name."""
    hw = get_hardware(name)
    if hw.predictor is not None:
        return cls.load(hw.predictor)
    measured = sorted(n for n in shipped if n in SPECS)
    if not measured:
        raise ValueError(f"no measured predictor is shipped to estimate {name!r} from; profile a device with "
                         "`sparsevit-profile` and fit it with `sparsevit-fit`")
    same_kind = [n for n in measured if SPECS[n].kind == hw.spec.kind]
    source = (same_kind or measured)[0]
    est = cls.load(shipped[source])
    source_spec = asdict(SPECS[source])
    if source_spec["cores"]:  # a CPU predictor timed on fewer threads than cores saw that share of the peak
        share = min(max(est.threads_), source_spec["cores"]) / source_spec["cores"]
        source_spec.update(peak_fp32_tflops=source_spec["peak_fp32_tflops"] * share,
                           peak_fp16_tflops=source_spec["peak_fp16_tflops"] * share)
    est._set_learned(estimate_={"source": source, "source_dtype": est.dtype_, "source_spec": source_spec,
                                "target_spec": asdict(hw.spec)},
                     hardware_=name, estimated_=True, dtype_=hw.spec.default_dtype, metrics_={})
    logger.warning(
        "no measured latency predictor for %r: latencies are estimated (the %s predictor rescaled by a "
        "roofline of published %s specs, %s); profile the device with `sparsevit-profile` and fit or "
        "calibrate a predictor to replace the estimate", name, source, name, hw.spec.default_dtype)
    return est


def calibrate(cls: type[LatencyPredictor], base: LatencyPredictor, df: pd.DataFrame,
              prior_weight: float) -> LatencyPredictor:
    """See :meth:`LatencyPredictor.calibrate`."""
    base._check_fitted()
    df = validate_frame(df, "calibration data")
    hardware = one_device(df, "calibrate for one device at a time")
    new = cls.from_dict(base.to_dict())
    new._set_learned(statistic_=new._resolve_statistic(df))
    layers = runnable(df[df["layer"] != "model"])
    models = with_mlp_ratio(df[df["layer"] == "model"].reset_index(drop=True), df)
    if layers.empty and models.empty:
        raise ValueError("no calibration rows: measure at least a few whole models or layer units")
    if len(layers):
        new._set_learned(unit_scale_=_layer_scales(new, layers, prior_weight))
    if len(models):
        unit_scale, overhead_ms = _model_scales(new, models, prior_weight)
        new._set_learned(unit_scale_=unit_scale, overhead_ms_=overhead_ms)
    return new._set_learned(
        hardware_=hardware, estimated_=False, metrics_={},
        fit_keys_=sorted(set(base.fit_keys_) | set(models.apply(model_key, axis=1))),
        calibration_={"base": base.hardware_, "base_estimated": base.estimated_,
                      "model_rows": int(len(models)), "layer_rows": int(len(layers))})


def _combine(old: dict[str, float], new: dict[str, float], default: float) -> dict[str, float]:
    """Calibration on top of calibration: each group's old scale (else the common ``*``) times
    its new one (else ``default``)."""
    return {g: old.get(g, old.get("*", 1.0)) * new.get(g, default) for g in sorted(set(old) | set(new) | {"*"})}


def _layer_scales(predictor: LatencyPredictor, layers: pd.DataFrame, prior_weight: float) -> dict[str, float]:
    """Unit scales from layer rows: each group's mean log-ratio, shrunk toward the common one."""
    log_ratio = np.log(layers[predictor.statistic_].to_numpy(float) / predictor.predict(layers))
    groups = np.array([calibration_group(k, s) for k, s in zip(layers["layer"], layers["stage"])])
    common = float(log_ratio.mean())
    scale = {g: float(np.exp((log_ratio[groups == g].sum() + prior_weight * common)
                             / ((groups == g).sum() + prior_weight))) for g in np.unique(groups)}
    return _combine(predictor.unit_scale_, scale, float(np.exp(common)))


def _model_scales(predictor: LatencyPredictor, models: pd.DataFrame,
                  prior_weight: float) -> tuple[dict[str, float], float]:
    """Unit scales and overhead from whole-model rows: one scale per group and the overhead by
    least squares on relative error, pulled toward one common scale with ``prior_weight``."""
    y = models[predictor.statistic_].to_numpy(float)
    parts = []  # per config: Σ unit ms by calibration group
    for units in model_units(models):
        ms = predictor.scale_ * predictor.predict(units) * units["weight"].to_numpy()
        parts.append(pd.Series(ms).groupby([calibration_group(k, s)
                                            for k, s in zip(units["layer"], units["stage"])]).sum())
    parts = pd.DataFrame(parts).fillna(0.0)
    P = parts.to_numpy()
    common = float(np.median(y / (P.sum(axis=1) + predictor.overhead_ms_)))
    typical = float(y.mean())
    w = np.sqrt(prior_weight)
    G = P.shape[1]
    A = np.vstack([np.column_stack([P, np.ones(len(y))]) / y[:, None],
                   w * np.eye(G + 1)[:G], w * np.eye(G + 1)[G:] / typical])
    b = np.concatenate([np.ones(len(y)), np.full(G, w * common), [w * common * predictor.overhead_ms_ / typical]])
    theta = lsq_linear(A, b, bounds=(0.0, np.inf)).x
    fitted = dict(zip(parts.columns, theta[:G]))  # groups these models do not run keep the common scale
    return _combine(predictor.unit_scale_, fitted, common), float(theta[G])
