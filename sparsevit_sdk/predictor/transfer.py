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

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from ..dataset.merge import select_device
from ..dataset.schema import FORWARD_KINDS, validate_frame
from ..hardware import HardwareSpec
from .gpu_model import published_model
from .rest import rest_table
from .rows import (
    block_kinds,
    fitted_statistic,
    model_key,
    model_units,
    one_device,
    one_runtime,
    runnable,
    with_mlp_ratio,
)
from .state import Learned
from .unit_model import (
    Curve,
    block_scales,
    calibration_groups,
    curve_axis,
    geometry_keys,
    interpolate,
    unit_ms,
)

logger = logging.getLogger(__name__)

# sparsities where whole-model calibration sets a block pair's scale (linear between), and how
# strongly neighbouring knots are pulled together
KNOTS = (0.0, 0.2, 0.4, 0.6, 0.8)
SMOOTHING = 1.0
# how much of the isolated units' residual curves calibration may keep (cross-validated on
# whole models when there are at least MIN_FOLDS of them)
CURVE_WEIGHTS = (0.0, 0.5, 1.0)
MIN_FOLDS = 5


def estimate(name: str, spec: HardwareSpec) -> Learned:
    """The state of a GPU target nobody measured: the published-figure cost model priced on its
    specs (see :meth:`LatencyPredictor.for_hardware`)."""
    model = published_model()
    cost_model = {"kind": "gpu-cost-model", "constants": asdict(model.constants_), "target_spec": asdict(spec),
                  "runtime": "eager", "figures": model.fit_report_["figures"]}
    logger.warning(
        "no measured latency predictor for %r: latencies are estimated by a GPU cost model fitted to %d published "
        "Swin measurements and priced on the %s's published specs (%s, eager PyTorch); calibrate it on the device "
        "with for_device(model, input_shape, 'cuda:0') or profile it with `sparsevit-profile`",
        name, cost_model["figures"], name, spec.default_dtype)
    return Learned(
        hw=name, estimated=True, estimate=cost_model, statistic="latency_ms", dtype=spec.default_dtype,
        threads=[1], runtime="eager", fingerprint={}, linear={}, boosters={}, unit_scale={}, unit_curves={},
        scale={}, overhead_ms=0.0, ms_per_gflop=float("nan"), calibration={}, metrics={}, fit_keys=[],
        blocks=["v1"], rest={})  # the published figures are all Swin V1


def calibrate(base: Learned, df: pd.DataFrame, *, statistic: str, prior_weight: float) -> Learned:
    """``base`` adapted to the device of ``df`` (see :meth:`LatencyPredictor.calibrate`);
    ``statistic`` is the predictor's parameter ("auto" or a column)."""
    return calibrate_with_folds(base, df, statistic=statistic, prior_weight=prior_weight)[0]


def calibrate_with_folds(base: Learned, df: pd.DataFrame, *, statistic: str,
                         prior_weight: float) -> tuple[Learned, list[Learned]]:
    """:func:`calibrate`, and the state each cross-validation fold fits without its whole models (none
    under :data:`MIN_FOLDS` of them): where the folds disagree on a config, measuring it teaches most."""
    sidecar = select_device(df, mix=True)[1]
    df = validate_frame(df, "calibration data")
    hw = one_device(df, "calibrate for one device at a time")
    # the block kinds measured here are known from now on: calibrating on them is what covers them;
    # the rests measured here are this device's, the base's were another's
    column = fitted_statistic(statistic, df)
    new = base.replace(statistic=column, blocks=sorted(set(base.blocks) | set(block_kinds(df))),
                       rest=rest_table(df, column))
    layers = runnable(df[~df["layer"].isin(FORWARD_KINDS)])
    models = with_mlp_ratio(df[df["layer"] == "model"].reset_index(drop=True), df)
    runtime = one_runtime(models) if len(models) else base.runtime
    if layers.empty and models.empty:
        raise ValueError("no calibration rows: measure at least a few whole models or layer units")
    per_model = model_units(models)  # priced again for every trial below, built once
    cross_validated: dict[str, float] = {}
    if len(layers):
        new = new.replace(unit_scale=_layer_scales(new, layers, prior_weight))
        residuals = _layer_residuals(new, layers)
        weight, checked = (_curve_weight(new, residuals, models, per_model, prior_weight)
                           if len(models) >= MIN_FOLDS else (1.0, {}))
        new = new.replace(unit_curves=_curves(new.unit_curves, residuals, weight))
        cross_validated = {"curve_weight": weight, **checked}
    folds: list[Learned] = []
    if len(models):
        parts, y = _parts(new, per_model), models[new.statistic].to_numpy(float)
        folds = [_scaled(new, parts[train], y[train], prior_weight) for train in _folds(len(models))]
        new = _scaled(new, parts, y, prior_weight)
    common = dict(
        hw=hw, estimated=False, metrics={},
        fingerprint=sidecar or {"fingerprint_id": sorted(df["fingerprint_id"].unique())},
        threads=sorted(int(t) for t in df["threads"].unique()), runtime=runtime)
    calibrated = new.replace(
        **common, fit_keys=sorted(set(base.fit_keys) | set(models.apply(model_key, axis=1))),
        calibration={"base": base.hw, "base_estimated": base.estimated,
                     "model_rows": int(len(models)), "layer_rows": int(len(layers)), **cross_validated})
    return calibrated, [fold.replace(**common) for fold in folds]


def _folds(n: int) -> list[np.ndarray]:
    """Training masks of the k-fold split of ``n`` whole models (none under :data:`MIN_FOLDS`)."""
    if n < MIN_FOLDS:
        return []
    fold = np.arange(n) % MIN_FOLDS
    return [fold != k for k in range(MIN_FOLDS)]


def _combine(old: dict[str, Curve], new: dict[str, Curve], default: float) -> dict[str, Curve]:
    """Calibration on top of calibration: each group's old curve (else the common ``*``) times
    its new one (else ``default``), at the knots of both."""
    out = {}
    for g in sorted(set(old) | set(new) | {"*"}):
        before, after = old.get(g, old.get("*", [[0.0, 1.0]])), new.get(g, [[0.0, default]])
        knots = np.unique([x for x, _ in before + after])
        out[g] = [[float(x), float(v)] for x, v in zip(knots, interpolate(before, knots) * interpolate(after, knots))]
    return out


def _layer_scales(learned: Learned, layers: pd.DataFrame, prior_weight: float) -> dict[str, Curve]:
    """Unit scales from layer rows: each group's mean log-ratio, shrunk toward the common one."""
    log_ratio = np.log(layers[learned.statistic].to_numpy(float) / unit_ms(learned, layers))
    groups = calibration_groups(layers)
    common = float(log_ratio.mean())
    scale = {g: [[0.0, float(np.exp((log_ratio[groups == g].sum() + prior_weight * common)
                                    / ((groups == g).sum() + prior_weight)))]] for g in np.unique(groups)}
    return _combine(learned.unit_scale, scale, float(np.exp(common)))


def _layer_residuals(learned: Learned, layers: pd.DataFrame) -> dict[str, pd.Series]:
    """Per measured geometry, the median log-ratio of measured to predicted at each kept
    window count (on top of the group scales)."""
    frame = pd.DataFrame({
        "key": geometry_keys(layers), "x": curve_axis(layers),
        "r": np.log(layers[learned.statistic].to_numpy(float) / unit_ms(learned, layers))})
    return {key: group.groupby("x")["r"].median() for key, group in frame.groupby("key")}


def _curves(old: dict[str, Curve], residuals: dict[str, pd.Series], weight: float) -> dict[str, Curve]:
    """Residual curves: a geometry measured before gets its old curve plus ``weight`` times
    the new residual, at the new points."""
    curves = dict(old)
    for key, residual in residuals.items():
        at = residual.index.to_numpy(float)
        before = interpolate(old[key], at) if key in old else 0.0
        curves[key] = [[float(x), float(r)] for x, r in zip(at, before + weight * residual.to_numpy())]
    return curves


def _curve_weight(learned: Learned, residuals: dict[str, pd.Series], models: pd.DataFrame,
                  per_model: list[pd.DataFrame], prior_weight: float) -> tuple[float, dict[str, float]]:
    """How much of the isolated units' residual curves to trust, chosen by k-fold
    cross-validation on the whole models (``per_model``: their units), and the chosen weight's
    cross-validated accuracy (``cv_within_10`` %, ``cv_mape`` %).  A unit timed alone keeps its
    working set in cache from call to call; inside a model the other stages' weights evict it, so
    where a unit's isolated time jumps at a cache edge the model's time may not (the Intel Xeon
    profile's first swin_micro stage at 672 px)."""
    y = models[learned.statistic].to_numpy(float)
    ratios = {}
    for weight in CURVE_WEIGHTS:
        trial = learned.replace(unit_curves=_curves(learned.unit_curves, residuals, weight))
        parts = _parts(trial, per_model)
        predicted = np.empty(len(models))
        for train in _folds(len(models)):
            theta, common, columns = _solve(trial, parts[train], y[train], prior_weight)
            held = parts[~train]
            # knots no training model touched keep the common scale, as _combine gives them
            predicted[~train] = (held[columns].to_numpy() @ theta[:-1] + theta[-1]
                                 + common * held.drop(columns=columns).to_numpy().sum(axis=1))
        ratios[weight] = predicted / y
    best = min(ratios, key=lambda w: float(np.mean(np.abs(np.log(ratios[w])))))
    error = np.abs(ratios[best] - 1.0)
    return best, {"cv_within_10": float((error <= 0.1).mean() * 100), "cv_mape": float(error.mean() * 100)}


def _hats(sparsity: np.ndarray) -> np.ndarray:
    """``(n, len(KNOTS))`` weights of linear interpolation between the knots at each sparsity."""
    return np.stack([interpolate([[k, float(i == j)] for j, k in enumerate(KNOTS)], sparsity)
                     for i in range(len(KNOTS))], axis=1)


def _parts(learned: Learned, per_model: list[pd.DataFrame]) -> pd.DataFrame:
    """Per whole model (its units ``per_model``), the ms its units add up to by (calibration group,
    knot): block pairs share their time between the knots around their sparsity."""
    every = pd.concat(per_model, ignore_index=True)  # priced in one call: xgboost's cost is per call, not per row
    priced = block_scales(learned, every["signature"]) * unit_ms(learned, every) * every["weight"].to_numpy()
    ends = np.cumsum([len(units) for units in per_model])
    parts = []
    for units, ms in zip(per_model, np.split(priced, ends[:-1])):
        groups = calibration_groups(units)
        pair = (units["layer"] == "block_pair").to_numpy()
        share = np.where(pair[:, None], _hats(units["sparsity"].to_numpy(float)), np.eye(len(KNOTS))[0])
        parts.append(pd.DataFrame(ms[:, None] * share, columns=KNOTS).assign(group=groups)
                     .groupby("group").sum().stack())
    return pd.DataFrame(parts).fillna(0.0).reset_index(drop=True)


def _solve(learned: Learned, parts: pd.DataFrame, y: np.ndarray,
           prior_weight: float) -> tuple[np.ndarray, float, pd.Index]:
    """Scales (one per column of ``parts`` that some model touches, then the overhead) fitted to the
    measured ``y`` by least squares on relative error, the common scale they are pulled toward, and
    those columns.

    Block pairs of each stage get a scale curve over sparsity (values at :data:`KNOTS`):
    inside a model a pair's time does not follow its isolated timing at every sparsity
    (what fits a cache alone need not fit between the other stages' weights).  Every value
    is pulled toward one common scale with ``prior_weight`` and toward its neighbour knot,
    so ten samples cannot overfit."""
    parts = parts.loc[:, parts.abs().sum() > 0]  # knots no unit touches
    P = parts.to_numpy()
    common = float(np.median(y / (P.sum(axis=1) + learned.overhead_ms)))
    typical = float(y.mean())
    w = np.sqrt(prior_weight)
    G = P.shape[1]
    neighbours = [(i, j) for i, j in zip(range(G), range(1, G)) if parts.columns[i][0] == parts.columns[j][0]]
    smooth = np.zeros((len(neighbours), G + 1))
    for row, (i, j) in enumerate(neighbours):
        smooth[row, i], smooth[row, j] = SMOOTHING * w, -SMOOTHING * w
    A = np.vstack([np.column_stack([P, np.ones(len(y))]) / y[:, None],
                   w * np.eye(G + 1)[:G], w * np.eye(G + 1)[G:] / typical, smooth])
    b = np.concatenate([np.ones(len(y)), np.full(G, w * common), [w * common * learned.overhead_ms / typical],
                        np.zeros(len(neighbours))])
    return lsq_linear(A, b, bounds=(0.0, np.inf)).x, common, parts.columns


def _scaled(learned: Learned, parts: pd.DataFrame, y: np.ndarray, prior_weight: float) -> Learned:
    """``learned`` with the unit scales and overhead that whole models ``parts`` measured at ``y`` give
    (:func:`_solve`); groups these models do not run keep the common scale."""
    theta, common, columns = _solve(learned, parts, y, prior_weight)
    fitted: dict[str, Curve] = {}
    for (group, knot), value in zip(columns, theta[:-1]):
        fitted.setdefault(group, []).append([float(knot), float(value)])
    return learned.replace(unit_scale=_combine(learned.unit_scale, fitted, common), overhead_ms=float(theta[-1]))
