"""Moving a predictor to other hardware: an estimate for a GPU nobody has profiled (the cost
model of :mod:`.gpu_model`, fitted to published measurements), and calibration of any
predictor to a device from a few of its measurements.

What differs between two CPUs is not one factor.  Measured on the shipped AMD EPYC and
Intel Xeon profiles, a block pair's ratio between the devices changes with the stage (its
GEMM shapes) and, at one geometry, jumps with the number of kept windows: on the Xeon the
first swin_micro stage at 672 px halves its time between 20 % and 30 % sparsity (the
working set starts to fit its cache), on the EPYC it falls smoothly.  So calibration keeps
three layers of correction: a scale per group (block pairs per stage, the small units),
a *residual curve* per measured unit geometry over the kept windows, and the whole-model
scale and overhead of how units add up inside a model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from ..dataset.merge import select_device
from ..dataset.schema import FORWARD_KINDS, validate_frame
from ..hardware import HardwareSpec, get_hardware
from .gpu_model import GpuConstants, published_model, unit_ms
from .rest import rest_table
from .rows import block_kinds, model_key, model_units, one_device, one_runtime, runnable, with_mlp_ratio

if TYPE_CHECKING:
    from .latency import LatencyPredictor

logger = logging.getLogger(__name__)

# sparsities where whole-model calibration sets a block pair's scale (linear between), and how
# strongly neighbouring knots are pulled together
KNOTS = (0.0, 0.2, 0.4, 0.6, 0.8)
SMOOTHING = 1.0
# how much of the isolated units' residual curves calibration may keep (cross-validated on
# whole models when there are at least MIN_FOLDS of them)
CURVE_WEIGHTS = (0.0, 0.5, 1.0)
MIN_FOLDS = 5


def calibration_groups(units: pd.DataFrame) -> np.ndarray:
    """Each unit's calibration group: block pairs are scaled per stage (their shapes, and so
    their efficiency, differ most); the small units share one scale."""
    return np.where(units["layer"] == "block_pair", "block_pair/" + units["stage"].astype(str), "rest")


def geometry_keys(units: pd.DataFrame) -> np.ndarray:
    """Which measured curve serves each unit: its kind, stage and every shape it runs at
    (the kept windows are the curve's axis, not part of the key)."""
    return (units["layer"] + "/" + units["stage"].astype(str) + ":" + units["signature"] + "@"
            + units["in_h"].astype(str) + "x" + units["in_w"].astype(str) + "/b" + units["batch"].astype(str)
            + "/" + units["dtype"]).to_numpy(str)


def curve_axis(units: pd.DataFrame) -> np.ndarray:
    """A curve's x: kept windows for block pairs, one point for every other unit (a score's
    cost hardly depends on how many windows its stage keeps)."""
    return np.where(units["layer"] == "block_pair", units["windows_kept"], 0).astype(float)


def _curve_log_ratio(curves: dict[str, list[list[float]]], units: pd.DataFrame) -> np.ndarray:
    """Log-correction of every unit: its geometry's curve interpolated at its kept windows
    (flat beyond the measured ends), 0 where no curve was measured."""
    keys, x = geometry_keys(units), curve_axis(units)
    out = np.zeros(len(units))
    for key in set(keys) & set(curves):
        sel = keys == key
        out[sel] = _interpolate(curves[key], x[sel])
    return out


def estimate_ms(predictor: LatencyPredictor, units: pd.DataFrame) -> np.ndarray:
    """Unit ms of an estimated target: the published-figure GPU cost model on its specs."""
    estimate = predictor.estimate_
    return unit_ms(GpuConstants(**estimate["constants"]), units, HardwareSpec(**estimate["target_spec"]),
                   estimate["runtime"])


def calibrated(predictor: LatencyPredictor, ms: np.ndarray, units: pd.DataFrame) -> np.ndarray:
    """Unit ms before calibration → after: the residual curves, then the group scales."""
    if predictor.unit_curves_:
        ms = ms * np.exp(_curve_log_ratio(predictor.unit_curves_, units))
    if predictor.unit_scale_:
        ms = ms * _group_scales(predictor.unit_scale_, units)
    return ms


def for_hardware(cls: type[LatencyPredictor], name: str, shipped: dict[str, Path]) -> LatencyPredictor:
    """See :meth:`LatencyPredictor.for_hardware`; ``shipped``: the shipped predictor files by name."""
    hw = get_hardware(name)
    if hw.predictor is not None:
        return cls.load(hw.predictor)
    if hw.spec.kind != "gpu":
        raise ValueError(f"no measured predictor for the CPU target {name!r} and no estimate for CPUs (they differ "
                         "too much for specs to say); on that CPU use hw='local' (LatencyPredictor.for_device) or "
                         "profile it with `sparsevit-profile` and fit with `sparsevit-fit`")
    model = published_model()
    estimate = {"kind": "gpu-cost-model", "constants": asdict(model.constants_), "target_spec": asdict(hw.spec),
                "runtime": "eager", "figures": model.fit_report_["figures"]}
    est = cls()._set_learned(
        hardware_=name, estimated_=True, estimate_=estimate, statistic_="latency_ms", dtype_=hw.spec.default_dtype,
        threads_=[1], runtime_="eager", fingerprint_={}, linear_={}, boosters_={}, unit_scale_={}, unit_curves_={},
        scale_={}, overhead_ms_=0.0, ms_per_gflop_=float("nan"), calibration_={}, metrics_={}, fit_keys_=[],
        blocks_=["v1"], rest_={})  # the published figures are all Swin V1
    logger.warning(
        "no measured latency predictor for %r: latencies are estimated by a GPU cost model fitted to %d published "
        "Swin measurements and priced on the %s's published specs (%s, eager PyTorch); calibrate it on the device "
        "with LatencyPredictor.for_device('cuda:0', model, input_shape) or profile it with `sparsevit-profile`",
        name, estimate["figures"], name, hw.spec.default_dtype)
    return est


def calibrate(cls: type[LatencyPredictor], base: LatencyPredictor, df: pd.DataFrame,
              prior_weight: float) -> LatencyPredictor:
    """See :meth:`LatencyPredictor.calibrate`."""
    base._check_fitted()
    sidecar = select_device(df, mix=True)[1]
    df = validate_frame(df, "calibration data")
    hardware = one_device(df, "calibrate for one device at a time")
    new = cls.from_dict(base.to_dict())
    # the block kinds measured here are known from now on: calibrating on them is what covers them
    # the rests measured here are this device's; the base's were another's
    statistic = new._resolve_statistic(df)
    new._set_learned(statistic_=statistic, blocks_=sorted(set(base.blocks_) | set(block_kinds(df))),
                     rest_=rest_table(df, statistic))
    layers = runnable(df[~df["layer"].isin(FORWARD_KINDS)])
    models = with_mlp_ratio(df[df["layer"] == "model"].reset_index(drop=True), df)
    runtime = one_runtime(models) if len(models) else base.runtime_
    if layers.empty and models.empty:
        raise ValueError("no calibration rows: measure at least a few whole models or layer units")
    cross_validated: dict[str, float] = {}
    if len(layers):
        new._set_learned(unit_scale_=_layer_scales(new, layers, prior_weight))
        residuals = _layer_residuals(new, layers)
        weight, checked = (_curve_weight(new, residuals, models, prior_weight) if len(models) >= MIN_FOLDS
                           else (1.0, {}))
        new._set_learned(unit_curves_=_curves(new.unit_curves_, residuals, weight))
        cross_validated = {"curve_weight": weight, **checked}
    if len(models):
        unit_scale, overhead_ms = _model_scales(new, models, prior_weight)
        new._set_learned(unit_scale_=unit_scale, overhead_ms_=overhead_ms)
    return new._set_learned(
        hardware_=hardware, estimated_=False, metrics_={},
        fingerprint_=sidecar or {"fingerprint_id": sorted(df["fingerprint_id"].unique())},
        threads_=sorted(int(t) for t in df["threads"].unique()), runtime_=runtime,
        fit_keys_=sorted(set(base.fit_keys_) | set(models.apply(model_key, axis=1))),
        calibration_={"base": base.hardware_, "base_estimated": base.estimated_,
                      "model_rows": int(len(models)), "layer_rows": int(len(layers)), **cross_validated})


Curve = list[list[float]]  # [[x, value], ...] with increasing x; one point is a constant


def _interpolate(points: Curve, x: np.ndarray) -> np.ndarray:
    """A curve at ``x``, linear between its points and flat beyond its ends."""
    points = np.asarray(points, dtype=float)
    return np.interp(x, points[:, 0], points[:, 1])


def _group_scales(unit_scale: dict[str, Curve], units: pd.DataFrame) -> np.ndarray:
    """Each unit's scale: its group's curve (else the common ``*``) at the unit's sparsity."""
    groups = calibration_groups(units)
    sparsity = units["sparsity"].to_numpy(float)
    out = np.ones(len(units))
    for group in np.unique(groups):
        curve = unit_scale.get(group, unit_scale.get("*"))
        if curve is not None:
            out[groups == group] = _interpolate(curve, sparsity[groups == group])
    return out


def _combine(old: dict[str, Curve], new: dict[str, Curve], default: float) -> dict[str, Curve]:
    """Calibration on top of calibration: each group's old curve (else the common ``*``) times
    its new one (else ``default``), at the knots of both."""
    out = {}
    for g in sorted(set(old) | set(new) | {"*"}):
        before, after = old.get(g, old.get("*", [[0.0, 1.0]])), new.get(g, [[0.0, default]])
        knots = np.unique([x for x, _ in before + after])
        out[g] = [[float(x), float(v)] for x, v in zip(knots, _interpolate(before, knots) * _interpolate(after, knots))]
    return out


def _layer_scales(predictor: LatencyPredictor, layers: pd.DataFrame, prior_weight: float) -> dict[str, Curve]:
    """Unit scales from layer rows: each group's mean log-ratio, shrunk toward the common one."""
    log_ratio = np.log(layers[predictor.statistic_].to_numpy(float) / predictor.predict(layers))
    groups = calibration_groups(layers)
    common = float(log_ratio.mean())
    scale = {g: [[0.0, float(np.exp((log_ratio[groups == g].sum() + prior_weight * common)
                                    / ((groups == g).sum() + prior_weight)))]] for g in np.unique(groups)}
    return _combine(predictor.unit_scale_, scale, float(np.exp(common)))


def _layer_residuals(predictor: LatencyPredictor, layers: pd.DataFrame) -> dict[str, pd.Series]:
    """Per measured geometry, the median log-ratio of measured to predicted at each kept
    window count (on top of the group scales)."""
    frame = pd.DataFrame({
        "key": geometry_keys(layers), "x": curve_axis(layers),
        "r": np.log(layers[predictor.statistic_].to_numpy(float) / predictor.predict(layers))})
    return {key: group.groupby("x")["r"].median() for key, group in frame.groupby("key")}


def _curves(old: dict[str, Curve], residuals: dict[str, pd.Series], weight: float) -> dict[str, Curve]:
    """Residual curves: a geometry measured before gets its old curve plus ``weight`` times
    the new residual, at the new points."""
    curves = dict(old)
    for key, residual in residuals.items():
        at = residual.index.to_numpy(float)
        before = _interpolate(old[key], at) if key in old else 0.0
        curves[key] = [[float(x), float(r)] for x, r in zip(at, before + weight * residual.to_numpy())]
    return curves


def _curve_weight(predictor: LatencyPredictor, residuals: dict[str, pd.Series], models: pd.DataFrame,
                  prior_weight: float) -> tuple[float, dict[str, float]]:
    """How much of the isolated units' residual curves to trust, chosen by k-fold
    cross-validation on the whole models, and the chosen weight's cross-validated accuracy
    (``cv_within_10`` %, ``cv_mape`` %).  A unit timed alone keeps its working set in cache
    from call to call; inside a model the other stages' weights evict it, so where a unit's
    isolated time jumps at a cache edge the model's time may not (the Intel Xeon profile's
    first swin_micro stage at 672 px)."""
    old_curves, old_scale, old_overhead = predictor.unit_curves_, predictor.unit_scale_, predictor.overhead_ms_
    y = models[predictor.statistic_].to_numpy(float)
    fold = np.arange(len(models)) % min(MIN_FOLDS, len(models))
    ratios = {}
    for weight in CURVE_WEIGHTS:
        predictor._set_learned(unit_curves_=_curves(old_curves, residuals, weight))
        predicted = np.empty(len(models))
        for k in np.unique(fold):
            scale, overhead = _model_scales(predictor, models[fold != k], prior_weight)
            predictor._set_learned(unit_scale_=scale, overhead_ms_=overhead)
            predicted[fold == k] = predictor._whole_ms(models[fold == k])
            predictor._set_learned(unit_scale_=old_scale, overhead_ms_=old_overhead)
        ratios[weight] = predicted / y
    predictor._set_learned(unit_curves_=old_curves)
    best = min(ratios, key=lambda w: float(np.mean(np.abs(np.log(ratios[w])))))
    error = np.abs(ratios[best] - 1.0)
    return best, {"cv_within_10": float((error <= 0.1).mean() * 100), "cv_mape": float(error.mean() * 100)}


def _hats(sparsity: np.ndarray) -> np.ndarray:
    """``(n, len(KNOTS))`` weights of linear interpolation between the knots at each sparsity."""
    return np.stack([_interpolate([[k, float(i == j)] for j, k in enumerate(KNOTS)], sparsity)
                     for i in range(len(KNOTS))], axis=1)


def _model_scales(predictor: LatencyPredictor, models: pd.DataFrame,
                  prior_weight: float) -> tuple[dict[str, Curve], float]:
    """Unit scales and overhead from whole-model rows, by least squares on relative error.

    Block pairs of each stage get a scale curve over sparsity (values at :data:`KNOTS`):
    inside a model a pair's time does not follow its isolated timing at every sparsity
    (what fits a cache alone need not fit between the other stages' weights).  Every value
    is pulled toward one common scale with ``prior_weight`` and toward its neighbour knot,
    so ten samples cannot overfit."""
    y = models[predictor.statistic_].to_numpy(float)
    parts = []  # per config: Σ unit ms by (calibration group, knot)
    for units in model_units(models):
        ms = predictor._scales(units["signature"]) * predictor.predict(units) * units["weight"].to_numpy()
        groups = calibration_groups(units)
        pair = (units["layer"] == "block_pair").to_numpy()
        share = np.where(pair[:, None], _hats(units["sparsity"].to_numpy(float)), np.eye(len(KNOTS))[0])
        parts.append(pd.DataFrame(ms[:, None] * share, columns=KNOTS).assign(group=groups)
                     .groupby("group").sum().stack())
    parts = pd.DataFrame(parts).fillna(0.0)
    parts = parts.loc[:, parts.abs().sum() > 0]  # knots no unit touches
    P = parts.to_numpy()
    common = float(np.median(y / (P.sum(axis=1) + predictor.overhead_ms_)))
    typical = float(y.mean())
    w = np.sqrt(prior_weight)
    G = P.shape[1]
    neighbours = [(i, j) for i, j in zip(range(G), range(1, G)) if parts.columns[i][0] == parts.columns[j][0]]
    smooth = np.zeros((len(neighbours), G + 1))
    for row, (i, j) in enumerate(neighbours):
        smooth[row, i], smooth[row, j] = SMOOTHING * w, -SMOOTHING * w
    A = np.vstack([np.column_stack([P, np.ones(len(y))]) / y[:, None],
                   w * np.eye(G + 1)[:G], w * np.eye(G + 1)[G:] / typical, smooth])
    b = np.concatenate([np.ones(len(y)), np.full(G, w * common), [w * common * predictor.overhead_ms_ / typical],
                        np.zeros(len(neighbours))])
    theta = lsq_linear(A, b, bounds=(0.0, np.inf)).x
    fitted: dict[str, Curve] = {}  # groups these models do not run keep the common scale
    for (group, knot), value in zip(parts.columns, theta[:G]):
        fitted.setdefault(group, []).append([float(knot), float(value)])
    return _combine(predictor.unit_scale_, fitted, common), float(theta[G])
