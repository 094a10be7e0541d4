"""LatencyPredictor: per-layer xgboost models fitted on profiled units, summed to a whole model.

Each unit kind (patch_embed, patch_merge, score, block_pair, norm) gets its own model of
log latency.  Trees cannot extrapolate, so each starts from an analytic base: a
non-negative fit of ``latency ≈ c0 + c1·FLOPs + c2·bytes`` (``c0`` is the fixed per-call
cost).  The booster learns the log-ratio to that base, which stays bounded where the base
is right and keeps predictions sane at sizes outside the data (a resolution left out of
fitting).  A whole model is ``scale · Σ units + overhead``, fitted on a few whole-model rows
that :meth:`LatencyPredictor.evaluate` then never judges on; ``scale`` is one per block kind
(Swin V1, V2), since how far a model's units run slower inside it than alone (their caches
shared with the rest of the model) depends on what the blocks do.

This module is the estimator: fitting and prediction.  The other jobs live beside it and
the class delegates to them: :mod:`.judging` (held-out rows, accuracy, baselines),
:mod:`.transfer` (spec estimates for other hardware, calibration), :mod:`.persistence`
(JSON files; nothing is ever pickled), :mod:`.costs` (the cost table) and :mod:`.rows`
(profile rows as the predictor reads them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn.exceptions
import xgboost as xgb
from scipy.optimize import least_squares, nnls

from .._data import shipped_predictors
from ..arch import signature_blocks
from ..config import SparsityConfig
from ..dataset.merge import select_device
from ..dataset.schema import FORWARD_KINDS, HOUR_MS, stable_statistic, validate_frame
from ..sparse.swin import check_input_shape
from . import judging, persistence, transfer
from .costs import CostTable, layer_sums
from .features import FEATURES, UNIT_KINDS, Architecture, unit_costs, unit_features
from .rest import rest_key, rest_table
from .rows import (
    STATISTICS,
    block_kinds,
    draw_rows,
    model_gflops,
    model_key,
    one_device,
    one_runtime,
    runnable,
    with_mlp_ratio,
)

__all__ = ["STATISTICS", "LatencyPredictor", "NotFittedError"]

logger = logging.getLogger(__name__)

_model_key = model_key  # its name here before the split

# What fit, load and the transfers learn; written only by LatencyPredictor._set_learned.
LEARNED = ("hardware_", "estimated_", "estimate_", "statistic_", "dtype_", "threads_", "runtime_", "fingerprint_",
           "linear_",
           "boosters_", "scale_", "overhead_ms_", "ms_per_gflop_", "unit_scale_", "unit_curves_", "calibration_",
           "metrics_", "fit_keys_", "blocks_", "rest_")
# the learned attributes the cost tables are computed from: changing one empties the cache
_TABLE_INPUTS = frozenset({"estimate_", "linear_", "boosters_", "unit_scale_", "unit_curves_"})


class NotFittedError(sklearn.exceptions.NotFittedError, RuntimeError):
    """scikit-learn's ``NotFittedError``, and still the ``RuntimeError`` earlier versions raised."""


class LatencyPredictor:
    """Latency of a SparseSwin at a sparsity config on one device, in milliseconds.

    Parameters are the boosters' (``n_estimators``, ``max_depth``, ``learning_rate``,
    ``random_state``), the measured ``statistic`` to fit ("auto": ``p10_ms`` on a CPU,
    whose medians drift run to run, the median on a GPU), and ``overhead_fraction``: the
    share of whole-model rows used to fit the overhead (the rest judge the predictor).
    """

    def __init__(self, *, statistic: str = "auto", n_estimators: int = 300, max_depth: int = 4,
                 learning_rate: float = 0.05, overhead_fraction: float = 0.25, random_state: int = 0) -> None:
        self.statistic = statistic
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.overhead_fraction = overhead_fraction
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "n_estimators": self.n_estimators, "max_depth": self.max_depth,
                "learning_rate": self.learning_rate, "overhead_fraction": self.overhead_fraction,
                "random_state": self.random_state}

    # ------------------------------------------------------------------ fitting
    def fit(self, df: pd.DataFrame, *, fingerprint: dict | None = None) -> LatencyPredictor:
        """Fit unit models on the layer rows of one device's profile ``df`` and the overhead
        on ``overhead_fraction`` of its whole-model rows; judge on the rest (``metrics_``).

        ``fingerprint`` defaults to the sidecar(s) in ``df.attrs`` (as ``load_profiles`` and
        ``profile_model`` leave them), so validation later knows the device and its clock."""
        if not 0.0 < self.overhead_fraction < 1.0:
            raise ValueError(f"overhead_fraction must be in (0, 1), got {self.overhead_fraction}: it is the share of "
                             "whole-model rows that fit the overhead, and the rest judge the predictor")
        sidecar = select_device(df, mix=True)[1]
        df = validate_frame(df, "fit data")
        hardware = one_device(df, "fit one predictor per device")
        statistic = self._resolve_statistic(df)
        layers = runnable(df[~df["layer"].isin(FORWARD_KINDS)])
        missing = [k for k in UNIT_KINDS if k not in set(layers["layer"])]
        if missing:
            raise ValueError(f"the data has no {missing} rows; profile every unit kind ({UNIT_KINDS})")
        linear, boosters = {}, {}
        for kind in UNIT_KINDS:
            rows = layers[layers["layer"] == kind]
            linear[kind], boosters[kind] = self._fit_kind(rows, rows[statistic].to_numpy(float))
        self._set_learned(
            hardware_=hardware, estimated_=False, estimate_=None, statistic_=statistic,
            dtype_=str(layers["dtype"].mode().iloc[0]), threads_=sorted(int(t) for t in layers["threads"].unique()),
            runtime_="eager",
            fingerprint_=fingerprint or sidecar or {"fingerprint_id": sorted(df["fingerprint_id"].unique())},
            linear_=linear, boosters_=boosters, unit_scale_={}, unit_curves_={}, scale_={}, overhead_ms_=0.0,
            ms_per_gflop_=float("nan"), calibration_={}, metrics_={}, fit_keys_=[], blocks_=block_kinds(layers),
            rest_=rest_table(df, statistic))
        models = df[df["layer"] == "model"]
        self._set_learned(runtime_=one_runtime(models))
        chosen = with_mlp_ratio(draw_rows(models, self.overhead_fraction, str(self.random_state)), df)
        if len(chosen):
            scale, overhead_ms = self._fit_overhead(chosen)
            ms_per_gflop = float(np.median(chosen[statistic].to_numpy(float) / model_gflops(chosen)))
            self._set_learned(scale_=scale, overhead_ms_=overhead_ms, ms_per_gflop_=ms_per_gflop,
                              fit_keys_=sorted(chosen.apply(model_key, axis=1)))
        else:
            logger.warning("no whole-model rows: overhead not fitted and nothing to judge the predictor on")
        if len(models) > len(chosen):
            self._set_learned(metrics_=judging.evaluate(self, df))
        return self

    def _set_learned(self, **learned: Any) -> LatencyPredictor:
        """The one place learned attributes are written (by fit, load and the transfers): all
        of :data:`LEARNED` on a predictor not yet fitted, any of them later.  Empties the
        cost-table cache when what the tables are computed from changes."""
        unknown = set(learned) - set(LEARNED)
        missing = set() if hasattr(self, "boosters_") else set(LEARNED) - set(learned)
        if unknown or missing:
            raise TypeError(f"learned attributes: unknown {sorted(unknown)}, missing {sorted(missing)}")
        for name, value in learned.items():
            setattr(self, name, value)
        if _TABLE_INPUTS & set(learned):
            self._tables: dict[tuple, CostTable] = {}
        return self

    def _resolve_statistic(self, df: pd.DataFrame) -> str:
        if self.statistic == "auto":
            return stable_statistic(*df["device"].unique(), profile=True)
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be 'auto' or one of {STATISTICS}, got {self.statistic!r}")
        return self.statistic

    def _fit_kind(self, rows: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, xgb.Booster]:
        """Analytic base by non-negative least squares on relative error, then a booster on
        the log-ratio to it."""
        basis = self._basis(rows)
        norm = basis.mean(axis=0) + 1e-30
        coef, _ = nnls(basis / norm / y[:, None], np.ones(len(y)))
        coef = coef / norm
        if not coef.any():  # degenerate data: a constant at the geometric mean
            coef[0] = float(np.exp(np.log(y).mean()))
        data = xgb.DMatrix(unit_features(rows), label=np.log(y), base_margin=np.log(basis @ coef),
                           feature_names=list(FEATURES))
        params = {"max_depth": self.max_depth, "eta": self.learning_rate, "subsample": 0.8,
                  "colsample_bytree": 0.8, "min_child_weight": 2, "seed": self.random_state, "nthread": 1}
        return coef, xgb.train(params, data, num_boost_round=self.n_estimators)

    @staticmethod
    def _basis(units: pd.DataFrame) -> np.ndarray:
        flops, moved = unit_costs(units)
        return np.column_stack([np.ones(len(units)), flops, moved])

    def _fit_overhead(self, models: pd.DataFrame) -> tuple[dict[str, float], float]:
        """``measured ≈ scale[block kind] · Σ units + overhead_ms`` on relative error, with a
        soft-L1 loss: a whole model measured while another process held the memory bus is an
        outlier that should not move the fit."""
        sums = self._layer_sums(models)
        y = models[self.statistic_].to_numpy(float)
        kinds, which = np.unique(signature_blocks(models["signature"]), return_inverse=True)
        if len(models) == 1:
            return {str(kinds[0]): 1.0}, max(float(y[0] - sums[0]), 0.0)
        k = len(kinds)
        fit = least_squares(lambda t: (t[which] * sums + t[k]) / y - 1.0, [1.0] * k + [0.0], loss="soft_l1",
                            f_scale=0.05, bounds=([0.5] * k + [0.0], [2.0] * k + [np.inf]))
        return {str(kind): float(s) for kind, s in zip(kinds, fit.x[:k])}, float(fit.x[k])

    def _scales(self, signatures: Sequence[str]) -> np.ndarray:
        """The whole-model scale of each signature's block kind; a kind no whole model was
        fitted on gets the mean of the others (the predictor warns about such a model)."""
        default = float(np.mean(list(self.scale_.values()))) if self.scale_ else 1.0
        return np.array([self.scale_.get(kind, default) for kind in signature_blocks(signatures)], dtype=float)

    def _whole_ms(self, models: pd.DataFrame) -> np.ndarray:
        """Predicted ms of whole-model rows: ``scale · Σ units + overhead``."""
        return self._scales(models["signature"]) * self._layer_sums(models) + self.overhead_ms_

    # --------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "boosters_"):
            raise NotFittedError("this LatencyPredictor is not fitted; call fit(df) or LatencyPredictor.load(name)")

    @property
    def hardware(self) -> str:
        self._check_fitted()
        return self.hardware_

    @property
    def estimated(self) -> bool:
        """True when no measurement of this device stands behind the predictions."""
        self._check_fitted()
        return self.estimated_

    def __repr__(self) -> str:
        if not hasattr(self, "boosters_"):
            return "LatencyPredictor(not fitted)"
        kind = "estimated from specs" if self.estimated_ else f"measured, {self.statistic_}"
        return f"LatencyPredictor({self.hardware_}, {kind})"

    def predict(self, layers: pd.DataFrame) -> np.ndarray:
        """Latency in ms of every unit row (profile-schema descriptor columns)."""
        self._check_fitted()
        if layers.empty:
            return np.zeros(0)
        if self.estimate_ is not None:
            return transfer.calibrated(self, transfer.estimate_ms(self, layers), layers)
        features = unit_features(layers)
        basis = self._basis(layers)
        kinds = layers["layer"].to_numpy()
        out = np.empty(len(layers))
        for kind in np.unique(kinds):
            sel = kinds == kind
            margin = np.log(basis[sel] @ self.linear_[kind])
            out[sel] = np.exp(self.boosters_[kind].inplace_predict(features[sel], base_margin=margin))
        return transfer.calibrated(self, out, layers)

    def predict_configs(self, model, configs: Sequence[SparsityConfig], input_shape: Sequence[int],
                        *, dtype: str | None = None) -> np.ndarray:
        """Whole-model latency (ms) of ``model`` at every config, for inputs ``(B, C, H, W)``.

        Unit costs are tabulated once per (model, input shape, dtype) and sparsity value,
        so a batch of configs costs a few array lookups.
        """
        return self._predict_arch(Architecture.from_model(model), configs, input_shape, dtype)

    def predict_config(self, model, config: SparsityConfig, input_shape: Sequence[int],
                       *, dtype: str | None = None) -> float:
        """Whole-model latency (ms) of ``model`` at ``config``."""
        return float(self.predict_configs(model, [config], input_shape, dtype=dtype)[0])

    def _predict_arch(self, arch: Architecture, configs: Sequence[SparsityConfig], input_shape: Sequence[int],
                      dtype: str | None) -> np.ndarray:
        self._check_fitted()
        shape = check_input_shape(input_shape, arch.in_chans)  # no number for a shape the model refuses
        for cfg in {cfg.signature: cfg for cfg in configs}.values():
            cfg.check_model(arch.signature)
        table = self._table(arch, shape, dtype or self.dtype_)
        out = np.empty(len(configs))
        for granularity in {cfg.granularity for cfg in configs}:
            idx = [i for i, cfg in enumerate(configs) if cfg.granularity == granularity]
            out[idx] = table.layer_sum(np.array([configs[i].ratios for i in idx], dtype=float), granularity)
        ms = self._scales([arch.signature])[0] * out + self.overhead_ms_
        bad = ~(np.isfinite(ms) & (ms > 0) & (ms < HOUR_MS))
        if bad.any():  # a number no device can take is an error, never a latency
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"the {self.hardware_} predictor gives {ms[i]:.6g} ms for {arch.signature} at "
                             f"{configs[i]} and input {'x'.join(map(str, shape))}: not a latency (it must be positive, "
                             f"finite and under an hour); the predictor is damaged or was fitted on bad data: "
                             f"{persistence.REFIT}")
        return ms

    def _table(self, arch: Architecture, input_shape: tuple[int, ...], dtype: str) -> CostTable:
        key = (arch, input_shape, dtype)
        if key not in self._tables and arch.block not in self.blocks_:
            logger.warning(
                "the %s predictor has no Swin %s measurements (it knows %s blocks): %s latencies are extrapolated "
                "from the other kind's unit costs; measure this model with hw='local' "
                "(LatencyPredictor.for_device) for numbers to trust", self.hardware_, arch.block.upper(),
                "/".join(b.upper() for b in self.blocks_), arch.signature)
        if key not in self._tables:
            self._tables[key] = CostTable(self, arch, input_shape, dtype)
        return self._tables[key]

    def _layer_sums(self, models: pd.DataFrame) -> np.ndarray:
        """Σ unit predictions (before scale and overhead) of whole-model rows."""
        return layer_sums(self._table, models)

    def rest_for(self, model_key: str, input_shape: Sequence[int], *, dtype: str | None = None) -> dict | None:
        """What the whole model ``model_key`` (:meth:`ModelForward.key`) cost beyond its backbone
        where this predictor's profile timed it, at ``input_shape`` (``{"ms", "calls", "whole_ms",
        "backbone_ms"}``), or None if it was not timed there."""
        self._check_fitted()
        return self.rest_.get(rest_key(model_key, input_shape, dtype or self.dtype_, self.runtime_))

    # --------------------------------------------------------------- judging
    def held_out(self, df: pd.DataFrame) -> pd.DataFrame:
        """The whole-model rows of ``df`` never used in fitting, with this predictor's
        ``predicted_ms`` next to the measured ``statistic_`` column: what :meth:`evaluate`
        scores and ``sparsevit-fit --plot`` draws."""
        df = validate_frame(df, "evaluation data")
        self._check_fitted()
        return judging.held_out(self, df)

    def evaluate(self, df: pd.DataFrame) -> dict[str, Any]:
        """Accuracy on the whole-model rows of ``df`` that were never used in fitting, next to
        two baselines: FLOPs-proportional (``ms_per_gflop_ · GFLOPs``) and a lookup table
        (sum of the measured units of ``df`` itself, as once-for-all does; ``coverage`` says
        how many configs it could answer)."""
        df = validate_frame(df, "evaluation data")
        self._check_fitted()
        return judging.evaluate(self, df)

    # ------------------------------------------------------------ new devices
    @classmethod
    def for_hardware(cls, name: str) -> LatencyPredictor:
        """The measured predictor of target ``name``, or for a GPU nobody has profiled an
        estimate (``estimated`` is True and a warning says so): the cost model of
        :mod:`.gpu_model`, fitted to published Swin measurements, priced on its specs."""
        return transfer.for_hardware(cls, name, shipped_predictors())

    @classmethod
    def for_device(cls, device: str, model, input_shape: Sequence[int], *, dtype: str = "fp32",
                   threads: int | None = None, runtime: str = "eager", base: LatencyPredictor | None = None,
                   cache: bool = True, refresh: bool = False, call=None, progress: bool = True) -> LatencyPredictor:
        """A predictor for ``model`` at ``input_shape`` on ``device`` ("cpu", "cuda:0"),
        calibrated here: about 2 minutes of measuring for Swin-T at 672 on a 2-core CPU, then
        cached (see :mod:`sparsevit_sdk.local`) so the next call returns at once (``refresh`` measures
        again and replaces it; ``cache=False`` neither reads nor writes it).

        ``base`` defaults to the shipped predictor nearest this device; ``threads`` (CPU)
        defaults to 1, timed on the thread CPU clock, and N > 1 is timed on the wall clock;
        ``runtime`` ("eager", "compiled", "onnxruntime") is what the whole models are timed in.
        ``model`` may be a whole model around its Swin (a classifier, a segmenter): it is then
        also timed as it is called (``call``: None, a method name or ``call(model, x)``) at
        sparsity 0, and :meth:`rest_for` gives what it costs beyond its backbone here."""
        from ..local import for_device  # measuring is the profiler's: the predictor package does not import it

        return for_device(cls, device, model, input_shape, dtype=dtype, threads=threads, runtime=runtime, base=base,
                          cache=cache, refresh=refresh, call=call, progress=progress)

    @classmethod
    def calibrate(cls, base: LatencyPredictor, df: pd.DataFrame, *, prior_weight: float = 1.0) -> LatencyPredictor:
        """Adapt ``base`` to the device of ``df`` from a few measurements (HELP needs ~10).

        Layer rows rescale each calibration group (block pairs per stage, the small units
        together) by its mean log-ratio, shrunk toward the common one; whole-model rows fit
        one scale per group and the overhead by least squares, pulled toward a single common
        scale with weight ``prior_weight`` so ten samples cannot overfit.  The calibrated
        rows are excluded from :meth:`evaluate`.
        """
        return transfer.calibrate(cls, base, df, prior_weight)

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """Metadata and boosters (xgboost JSON) as one JSON-able document."""
        self._check_fitted()
        return persistence.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "predictor") -> LatencyPredictor:
        """Inverse of :meth:`to_dict`; a document of another format or version, or with any
        field of the wrong type, sign or range, is refused naming ``source`` and the field."""
        return persistence.from_dict(cls, data, source)

    def save(self, path: str | os.PathLike) -> Path:
        """Write one JSON file (never a pickle), atomically: a failed write keeps the previous file."""
        self._check_fitted()
        return persistence.save(self, path)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> LatencyPredictor:
        """A predictor file, or a shipped one by name (``"cpu"`` → ``predictors/cpu.json``)."""
        return persistence.load(cls, name_or_path, shipped_predictors())
