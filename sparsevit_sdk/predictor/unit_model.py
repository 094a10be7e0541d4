"""The unit-cost model: what a :class:`Learned` state says a unit, or a whole model, costs.

A fitted unit costs its analytic base times its booster's ratio; a unit of an estimated
target costs what the published-figure GPU cost model prices on the target's specs.
Calibration then corrects both: the residual curve of the unit's geometry over its kept
windows, then its group's scale over sparsity.  A whole model is ``scale[block kind] ·
Σ units + overhead_ms``, its units summed from cost tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..arch import Architecture, signature_blocks, unit_costs
from ..hardware import HardwareSpec
from .costs import CostTable, layer_sums
from .features import unit_features
from .gpu_model import GpuConstants
from .gpu_model import unit_ms as gpu_unit_ms
from .state import Learned

logger = logging.getLogger(__name__)

Curve = list[list[float]]  # [[x, value], ...] with increasing x; one point is a constant


def interpolate(points: Curve, x: np.ndarray) -> np.ndarray:
    """A curve at ``x``, linear between its points and flat beyond its ends."""
    points = np.asarray(points, dtype=float)
    return np.interp(x, points[:, 0], points[:, 1])


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


def basis(units: pd.DataFrame) -> np.ndarray:
    """The analytic base's columns ``[1, FLOPs, bytes]`` of every unit."""
    flops, moved = unit_costs(units)
    return np.column_stack([np.ones(len(units)), flops, moved])


def unit_ms(learned: Learned, units: pd.DataFrame) -> np.ndarray:
    """Latency in ms of every unit row (profile-schema descriptor columns)."""
    if units.empty:
        return np.zeros(0)
    if learned.estimate is not None:
        estimate = learned.estimate
        ms = gpu_unit_ms(GpuConstants(**estimate["constants"]), units, HardwareSpec(**estimate["target_spec"]),
                         estimate["runtime"])
    else:
        features, base = unit_features(units), basis(units)
        kinds = units["layer"].to_numpy()
        ms = np.empty(len(units))
        for kind in np.unique(kinds):
            sel = kinds == kind
            margin = np.log(base[sel] @ learned.linear[kind])
            ms[sel] = np.exp(learned.boosters[kind].inplace_predict(features[sel], base_margin=margin))
    if learned.unit_curves:
        ms = ms * np.exp(_curve_log_ratio(learned.unit_curves, units))
    if learned.unit_scale:
        ms = ms * _group_scales(learned.unit_scale, units)
    return ms


def block_scales(learned: Learned, signatures: Sequence[str]) -> np.ndarray:
    """The whole-model scale of each signature's block kind; a kind no whole model was
    fitted on gets the mean of the others (the predictor warns about such a model)."""
    default = float(np.mean(list(learned.scale.values()))) if learned.scale else 1.0
    return np.array([learned.scale.get(kind, default) for kind in signature_blocks(signatures)], dtype=float)


class Tables:
    """The cost tables of one state's unit prices, one per (architecture, input shape, dtype),
    built on first use: scoring thousands of configs is then a few array gathers."""

    def __init__(self, learned: Learned) -> None:
        self.learned = learned
        self._tables: dict[tuple, CostTable] = {}

    def __call__(self, arch: Architecture, input_shape: tuple[int, ...], dtype: str) -> CostTable:
        key = (arch, input_shape, dtype)
        if key not in self._tables:
            if arch.block not in self.learned.blocks:
                logger.warning(
                    "the %s predictor has no Swin %s measurements (it knows %s blocks): %s latencies are "
                    "extrapolated from the other kind's unit costs; measure this model with hw='local' "
                    "(for_device) for numbers to trust", self.learned.hw, arch.block.upper(),
                    "/".join(b.upper() for b in self.learned.blocks), arch.signature)
            self._tables[key] = CostTable(lambda units: unit_ms(self.learned, units), arch, input_shape, dtype)
        return self._tables[key]


def whole_ms(learned: Learned, models: pd.DataFrame, tables: Tables | None = None) -> np.ndarray:
    """Predicted ms of whole-model rows: ``scale · Σ units + overhead``.  ``tables`` must price
    units as ``learned`` does (built from it, or from a state it only added scales to)."""
    sums = layer_sums(tables or Tables(learned), models)
    return block_scales(learned, models["signature"]) * sums + learned.overhead_ms


def _curve_log_ratio(curves: dict[str, Curve], units: pd.DataFrame) -> np.ndarray:
    """Log-correction of every unit: its geometry's curve interpolated at its kept windows
    (flat beyond the measured ends), 0 where no curve was measured."""
    keys, x = geometry_keys(units), curve_axis(units)
    out = np.zeros(len(units))
    for key in set(keys) & set(curves):
        sel = keys == key
        out[sel] = interpolate(curves[key], x[sel])
    return out


def _group_scales(unit_scale: dict[str, Curve], units: pd.DataFrame) -> np.ndarray:
    """Each unit's scale: its group's curve (else the common ``*``) at the unit's sparsity."""
    groups = calibration_groups(units)
    sparsity = units["sparsity"].to_numpy(float)
    out = np.ones(len(units))
    for group in np.unique(groups):
        curve = unit_scale.get(group, unit_scale.get("*"))
        if curve is not None:
            out[groups == group] = interpolate(curve, sparsity[groups == group])
    return out
