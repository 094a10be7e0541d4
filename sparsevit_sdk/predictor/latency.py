"""LatencyPredictor: per-layer xgboost models fitted on profiled units, summed to a whole model.

Each unit kind (patch_embed, patch_merge, score, block_pair, norm) gets its own model of
log latency.  Trees cannot extrapolate, so each starts from an analytic base: a
non-negative fit of ``latency ≈ c0 + c1·FLOPs + c2·bytes`` (``c0`` is the fixed per-call
cost).  The booster learns the log-ratio to that base, which stays bounded where the base
is right and keeps predictions sane at sizes outside the data (a resolution left out of
fitting).  A whole model is ``scale · Σ units + overhead``, fitted on a few whole-model rows
that :meth:`LatencyPredictor.evaluate` then never judges on.

Files are one JSON document: metadata plus every booster in xgboost's own JSON format.
Nothing is ever pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.optimize import least_squares, lsq_linear, nnls

from .._atomic import write_json
from .._data import shipped_predictors
from .._documents import DocumentError, Field, check_header, header, read_json
from .._version import __version__
from ..config import SearchSpace, SparsityConfig
from ..hardware import SPECS, get_hardware
from ..models import build_model, list_models
from ..profiler.schema import validate_frame
from ..sparse.swin import check_input_shape
from ..sparse.windows import kept_windows
from .features import (
    DTYPE_BYTES,
    FEATURES,
    UNIT_KINDS,
    Architecture,
    config_units,
    fixed_units,
    pair_units,
    score_units,
    unit_costs,
    unit_features,
)
from .merge import select_device
from .metrics import accuracy

logger = logging.getLogger(__name__)

FORMAT = "sparsevit-latency-predictor"
SCHEMA_VERSION = 1
STATISTICS = ("p10_ms", "min_ms", "latency_ms")
# eager PyTorch ops per unit: with HardwareSpec.op_overhead_us, the floor of a unit on a GPU
OPS_PER_UNIT = {"patch_embed": 4, "patch_merge": 6, "score": 12, "block_pair": 50, "norm": 1}


def _calibration_group(layer: str, stage: int) -> str:
    """Block pairs are scaled per stage (their shapes, and so their efficiency, differ most);
    the small units share one scale."""
    return f"block_pair/{stage}" if layer == "block_pair" else "rest"


def _model_key(row: pd.Series) -> str:
    return f"{row.fingerprint_id}|{row.signature}|{row.img_h}x{row.img_w}|b{row.batch}|{row.dtype}|{row.config}"


def _runnable(layers: pd.DataFrame) -> pd.DataFrame:
    """Drop score rows timed at a sparsity that prunes nothing: ``select`` then skips scoring,
    so they time a no-op that never runs inside a model."""
    return layers[(layers["layer"] != "score") | (layers["windows_kept"] < layers["windows_total"])]


def _with_mlp_ratio(models: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Whole-model rows record no MLP ratio (it is not in the signature): take it from the
    block_pair rows of the same architecture, else from the model registry."""
    ratios = df[df["layer"] == "block_pair"].groupby("signature")["mlp_ratio"].first().to_dict()
    for signature, name in set(zip(models["signature"], models["model"])) - set(ratios):
        if name not in list_models():
            raise ValueError(f"cannot tell the MLP ratio of {signature!r}: include its block_pair rows")
        ratios[signature] = Architecture.from_model(build_model(name, seed=None)).mlp_ratio
    return models.assign(mlp_ratio=models["signature"].map(ratios).astype(float))


def _row_config(row: pd.Series, arch: Architecture) -> SparsityConfig:
    """The config of a whole-model row: a JSON list of knob ratios (pair or block knobs)."""
    data = json.loads(row.config)
    if isinstance(data, dict):
        return SparsityConfig.from_dict(data)
    pairs = SearchSpace(arch.depths, arch.signature, granularity="pair").num_knobs
    return SparsityConfig(tuple(data), arch.signature, "pair" if len(data) == pairs else "block")


class _CostTable:
    """Unit costs of one (architecture, input shape, dtype), filled lazily per sparsity value,
    so that scoring thousands of configs is a few array gathers."""

    def __init__(self, predictor: LatencyPredictor, arch: Architecture, input_shape: tuple[int, ...],
                 dtype: str) -> None:
        self.predictor, self.arch, self.input_shape, self.dtype = predictor, arch, input_shape, dtype
        self.fixed_ms = float(predictor.predict(fixed_units(arch, input_shape, dtype)).sum())
        scores = score_units(arch, input_shape, dtype)
        self.score_ms = predictor.predict(scores)
        self.windows_total = scores["windows_total"].to_numpy()
        self._columns: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # value → (pair ms, prunes) per stage
        self._knobs: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # granularity → (stage, pairs) per knob

    def columns(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(stages, len(values))`` ms of one block pair of each stage at each sparsity value,
        and whether that value prunes anything in the stage."""
        missing = [float(v) for v in values if float(v) not in self._columns]
        if missing:
            stages = range(len(self.arch.depths))
            units = pd.concat([pair_units(self.arch, self.input_shape, self.dtype, s, missing) for s in stages],
                              ignore_index=True)
            ms = self.predictor.predict(units).reshape(len(stages), len(missing))
            for j, v in enumerate(missing):
                prunes = np.array([kept_windows(int(n), v) < n for n in self.windows_total])
                self._columns[v] = (ms[:, j], prunes)
        ms, prunes = zip(*(self._columns[float(v)] for v in values))
        return np.stack(ms, axis=1), np.stack(prunes, axis=1)

    def knobs(self, granularity: str) -> tuple[np.ndarray, np.ndarray]:
        """Stage of every knob and how many block pairs it sets (half for a single block)."""
        if granularity not in self._knobs:
            knobs = SearchSpace(self.arch.depths, self.arch.signature, granularity=granularity).knobs
            self._knobs[granularity] = (np.array([k.stage for k in knobs]),
                                        np.array([len(k.blocks) / 2 for k in knobs]))
        return self._knobs[granularity]

    def layer_sum(self, ratios: np.ndarray, granularity: str) -> np.ndarray:
        """Σ unit ms for every row of ``ratios: (n_configs, n_knobs)``."""
        stages, pairs = self.knobs(granularity)
        if ratios.shape[1] != len(stages):
            raise ValueError(f"configs have {ratios.shape[1]} values; the model has {len(stages)} {granularity} knobs")
        values, index = np.unique(ratios, return_inverse=True)
        index = index.reshape(ratios.shape)
        ms, prunes = self.columns(values)  # (S, U) each
        total = self.fixed_ms + (pairs * ms[stages, index]).sum(axis=1)
        knob_prunes = prunes[stages, index]  # (n, K)
        stage_prunes = np.stack([knob_prunes[:, stages == s].any(axis=1) for s in range(len(self.score_ms))], axis=1)
        return total + stage_prunes @ self.score_ms


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

    # ------------------------------------------------------------------ fitting
    def fit(self, df: pd.DataFrame, *, fingerprint: dict | None = None) -> LatencyPredictor:
        """Fit unit models on the layer rows of one device's profile ``df`` and the overhead
        on ``overhead_fraction`` of its whole-model rows; judge on the rest (``metrics_``).

        ``fingerprint`` defaults to the sidecar(s) in ``df.attrs`` (as ``read_profiles`` and
        ``profile_model`` leave them), so validation later knows the device and its clock."""
        if not 0.0 < self.overhead_fraction < 1.0:
            raise ValueError(f"overhead_fraction must be in (0, 1), got {self.overhead_fraction}: it is the share of "
                             "whole-model rows that fit the overhead, and the rest judge the predictor")
        sidecar = select_device(df, mix=True)[1]
        df = validate_frame(df, "fit data")
        hardware = sorted(df["hw"].unique())
        if len(hardware) != 1:
            raise ValueError(f"fit one predictor per device; the data holds {hardware}")
        self.statistic_ = self._resolve_statistic(df)
        self.hardware_, self.estimated_, self.estimate_ = hardware[0], False, None
        layers = _runnable(df[df["layer"] != "model"])
        missing = [k for k in UNIT_KINDS if k not in set(layers["layer"])]
        if missing:
            raise ValueError(f"the data has no {missing} rows; profile every unit kind ({UNIT_KINDS})")
        self.dtype_ = str(layers["dtype"].mode().iloc[0])
        self.threads_ = sorted(int(t) for t in layers["threads"].unique())
        self.fingerprint_ = fingerprint or sidecar or {"fingerprint_id": sorted(df["fingerprint_id"].unique())}
        self.linear_, self.boosters_ = {}, {}
        for kind in UNIT_KINDS:
            rows = layers[layers["layer"] == kind]
            self.linear_[kind], self.boosters_[kind] = self._fit_kind(rows, rows[self.statistic_].to_numpy(float))
        self.unit_scale_: dict[str, float] = {}
        self.scale_, self.overhead_ms_ = 1.0, 0.0
        self._tables: dict[tuple, _CostTable] = {}
        models = df[df["layer"] == "model"]
        chosen = _with_mlp_ratio(self._overhead_rows(models), df)
        self.fit_keys_ = sorted(chosen.apply(_model_key, axis=1)) if len(chosen) else []
        if len(chosen):
            self.scale_, self.overhead_ms_ = self._fit_overhead(chosen)
            gflops = self._model_gflops(chosen)
            self.ms_per_gflop_ = float(np.median(chosen[self.statistic_].to_numpy(float) / gflops))
        else:
            logger.warning("no whole-model rows: overhead not fitted and nothing to judge the predictor on")
            self.ms_per_gflop_ = float("nan")
        self.calibration_: dict[str, Any] = {}
        self.metrics_ = self.evaluate(df) if len(models) > len(chosen) else {}
        return self

    def _resolve_statistic(self, df: pd.DataFrame) -> str:
        if self.statistic == "auto":
            return "p10_ms" if (df["device"] == "cpu").all() else "latency_ms"
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

    def _overhead_rows(self, models: pd.DataFrame) -> pd.DataFrame:
        """A fixed share of whole-model rows, picked by a hash of the measurement's key so the
        choice does not depend on row order."""
        if models.empty:
            return models
        salt = str(self.random_state)
        draw = models.apply(_model_key, axis=1).map(
            lambda key: int(hashlib.md5((salt + key).encode()).hexdigest()[:8], 16) / 16**8)
        chosen = draw < self.overhead_fraction
        if not chosen.any() and len(models) > 1:
            chosen = draw == draw.min()
        return models[chosen.to_numpy()]

    def _fit_overhead(self, models: pd.DataFrame) -> tuple[float, float]:
        """``measured ≈ scale · Σ units + overhead_ms`` on relative error, with a soft-L1 loss:
        a whole model measured while another process held the memory bus is an outlier
        that should not move the fit."""
        sums = self._layer_sums(models)
        y = models[self.statistic_].to_numpy(float)
        if len(models) == 1:
            return 1.0, max(float(y[0] - sums[0]), 0.0)
        fit = least_squares(lambda t: (t[0] * sums + t[1]) / y - 1.0, [1.0, 0.0], loss="soft_l1", f_scale=0.05,
                            bounds=([0.5, 0.0], [2.0, np.inf]))
        return float(fit.x[0]), float(fit.x[1])

    # --------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "boosters_"):
            raise RuntimeError("this LatencyPredictor is not fitted; call fit(df) or LatencyPredictor.load(name)")

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
        source = layers if self.estimate_ is None else layers.assign(dtype=self.estimate_["source_dtype"])
        features = unit_features(source)
        basis = self._basis(source)
        kinds = source["layer"].to_numpy()
        stages = source["stage"].to_numpy()
        out = np.empty(len(source))
        for kind in np.unique(kinds):
            sel = kinds == kind
            margin = np.log(basis[sel] @ self.linear_[kind])
            out[sel] = np.exp(self.boosters_[kind].inplace_predict(features[sel], base_margin=margin))
        if self.estimate_ is not None:
            out = self._rescale(out, source, layers)
        if self.unit_scale_:
            default = self.unit_scale_.get("*", 1.0)
            out *= [self.unit_scale_.get(_calibration_group(k, s), default) for k, s in zip(kinds, stages)]
        return out

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
        return self.scale_ * out + self.overhead_ms_

    def _table(self, arch: Architecture, input_shape: tuple[int, ...], dtype: str) -> _CostTable:
        tables = self.__dict__.setdefault("_tables", {})
        key = (arch, input_shape, dtype)
        if key not in tables:
            tables[key] = _CostTable(self, arch, input_shape, dtype)
        return tables[key]

    def _layer_sums(self, models: pd.DataFrame) -> np.ndarray:
        """Σ unit predictions (before overhead) of whole-model rows."""
        models = models.reset_index(drop=True)
        out = np.empty(len(models))
        for (signature, mlp, h, w, b, dtype), group in models.groupby(
                ["signature", "mlp_ratio", "img_h", "img_w", "batch", "dtype"], sort=False):
            arch = Architecture.from_signature(signature, mlp)
            table = self._table(arch, (b, arch.in_chans, h, w), dtype)
            configs = [_row_config(row, arch) for row in group.itertuples()]
            for granularity in {c.granularity for c in configs}:
                sel = [i for i, c in enumerate(configs) if c.granularity == granularity]
                ratios = np.array([configs[i].ratios for i in sel], dtype=float)
                out[group.index[sel]] = table.layer_sum(ratios, granularity)
        return out

    def _model_units(self, models: pd.DataFrame) -> list[pd.DataFrame]:
        """Every whole-model row's units (with weights), for the baselines."""
        out = []
        for row in models.itertuples():
            arch = Architecture.from_signature(row.signature, row.mlp_ratio)
            cfg = _row_config(row, arch)
            shape = (row.batch, arch.in_chans, row.img_h, row.img_w)
            out.append(config_units(arch, shape, row.dtype, cfg.block_sparsity(arch.signature, arch.depths)))
        return out

    def _model_gflops(self, models: pd.DataFrame) -> np.ndarray:
        """Analytic GFLOPs of whole-model rows (the FLOPs baseline)."""
        return np.array([(unit_costs(units)[0] * units["weight"]).sum() / 1e9 for units in self._model_units(models)])

    # --------------------------------------------------------------- judging
    def held_out(self, df: pd.DataFrame) -> pd.DataFrame:
        """The whole-model rows of ``df`` never used in fitting, with this predictor's
        ``predicted_ms`` next to the measured ``statistic_`` column: what :meth:`evaluate`
        scores and ``sparsevit-fit --plot`` draws."""
        return self._held_out(validate_frame(df, "evaluation data"))

    def _held_out(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        models = df[df["layer"] == "model"].reset_index(drop=True)
        held = models[~models.apply(_model_key, axis=1).isin(set(self.fit_keys_))] if len(models) else models
        if held.empty:
            raise ValueError("no whole-model rows left to judge on: every one was used in fitting (or there are "
                             "none); profile more configs or evaluate on another dataset")
        held = _with_mlp_ratio(held, df)
        held = held.assign(predicted_ms=self.scale_ * self._layer_sums(held) + self.overhead_ms_)
        held.attrs["excluded"] = int(len(models) - len(held))
        return held

    def evaluate(self, df: pd.DataFrame) -> dict[str, Any]:
        """Accuracy on the whole-model rows of ``df`` that were never used in fitting, next to
        two baselines: FLOPs-proportional (``ms_per_gflop_ · GFLOPs``) and a lookup table
        (sum of the measured units of ``df`` itself, as once-for-all does; ``coverage`` says
        how many configs it could answer)."""
        df = validate_frame(df, "evaluation data")
        held = self._held_out(df)
        y = held[self.statistic_].to_numpy(float)
        gflops = self._model_gflops(held)
        return {
            "hardware": self.hardware_, "estimated": self.estimated_, "statistic": self.statistic_,
            "excluded": held.attrs["excluded"],
            "xgboost": accuracy(held["predicted_ms"].to_numpy(float), y),
            "flops": accuracy(self.ms_per_gflop_ * gflops, y),
            "lookup": accuracy(self._lookup(_runnable(df[df["layer"] != "model"]), held), y),
        }

    def _lookup(self, layers: pd.DataFrame, models: pd.DataFrame) -> np.ndarray:
        """Sum of measured units per config; NaN where a unit was never measured."""
        def key(frame: pd.DataFrame) -> pd.Series:
            kept = np.where(frame["layer"] == "block_pair", frame["windows_kept"], 0)
            return (frame["layer"].astype(str) + "|" + frame["signature"].astype(str) + "|"
                    + frame["stage"].astype(str) + "|" + frame["img_h"].astype(str) + "x" + frame["img_w"].astype(str)
                    + "|" + frame["batch"].astype(str) + "|" + frame["dtype"].astype(str) + "|" + kept.astype(str))

        table = layers.groupby(key(layers))[self.statistic_].mean()
        return np.array([float((units["weight"] * key(units).map(table)).sum(skipna=False))
                         for units in self._model_units(models)])

    # ------------------------------------------------------------ new devices
    @classmethod
    def for_hardware(cls, name: str) -> LatencyPredictor:
        """The measured predictor of target ``name``, or a spec-based estimate (``estimated``
        is True and a warning says so) for a target nobody has profiled."""
        hw = get_hardware(name)
        if hw.predictor is not None:
            return cls.load(hw.predictor)
        shipped = shipped_predictors()
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
        est.estimate_ = {"source": source, "source_dtype": est.dtype_, "source_spec": source_spec,
                         "target_spec": asdict(hw.spec)}
        est.hardware_, est.estimated_, est.dtype_, est.metrics_ = name, True, hw.spec.default_dtype, {}
        est._tables = {}
        logger.warning(
            "no measured latency predictor for %r: latencies are estimated (the %s predictor rescaled by a "
            "roofline of published %s specs, %s); profile the device with `sparsevit-profile` and fit or "
            "calibrate a predictor to replace the estimate", name, source, name, hw.spec.default_dtype)
        return est

    def _rescale(self, ms: np.ndarray, source: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
        """Source-device unit ms → target, by the ratio of the two roofline times, floored by
        the target's per-op host cost."""
        def roofline(units: pd.DataFrame, spec: dict) -> np.ndarray:
            flops, moved = unit_costs(units)
            peak = np.where(units["dtype"] == "fp32", spec["peak_fp32_tflops"], spec["peak_fp16_tflops"]) * 1e12
            return np.maximum(flops / peak, moved / (spec["mem_bw_gbs"] * 1e9))

        target_spec = self.estimate_["target_spec"]
        ms = ms * roofline(target, target_spec) / roofline(source, self.estimate_["source_spec"])
        floor = target["layer"].map(OPS_PER_UNIT).to_numpy(float) * target_spec["op_overhead_us"] / 1e3
        return np.maximum(ms, floor)

    @classmethod
    def calibrate(cls, base: LatencyPredictor, df: pd.DataFrame, *, prior_weight: float = 1.0) -> LatencyPredictor:
        """Adapt ``base`` to the device of ``df`` from a few measurements (HELP needs ~10).

        Layer rows rescale each calibration group (block pairs per stage, the small units
        together) by its mean log-ratio, shrunk toward the common one; whole-model rows fit
        one scale per group and the overhead by least squares, pulled toward a single common
        scale with weight ``prior_weight`` so ten samples cannot overfit.  The calibrated
        rows are excluded from :meth:`evaluate`.
        """
        base._check_fitted()
        df = validate_frame(df, "calibration data")
        hardware = sorted(df["hw"].unique())
        if len(hardware) != 1:
            raise ValueError(f"calibrate for one device at a time; the data holds {hardware}")
        new = cls.from_dict(base.to_dict())
        new.statistic_ = new._resolve_statistic(df)
        layers = _runnable(df[df["layer"] != "model"])
        models = _with_mlp_ratio(df[df["layer"] == "model"].reset_index(drop=True), df)
        if layers.empty and models.empty:
            raise ValueError("no calibration rows: measure at least a few whole models or layer units")
        if len(layers):
            new._calibrate_layers(layers, prior_weight)
        if len(models):
            new._calibrate_models(models, prior_weight)
        new.hardware_, new.estimated_, new.metrics_ = hardware[0], False, {}
        new.fit_keys_ = sorted(set(base.fit_keys_) | set(models.apply(_model_key, axis=1)))
        new.calibration_ = {"base": base.hardware_, "base_estimated": base.estimated_,
                            "model_rows": int(len(models)), "layer_rows": int(len(layers))}
        return new

    def _calibrate_layers(self, layers: pd.DataFrame, prior_weight: float) -> None:
        log_ratio = np.log(layers[self.statistic_].to_numpy(float) / self.predict(layers))
        groups = np.array([_calibration_group(k, s) for k, s in zip(layers["layer"], layers["stage"])])
        common = float(log_ratio.mean())
        scale = {g: float(np.exp((log_ratio[groups == g].sum() + prior_weight * common)
                                 / ((groups == g).sum() + prior_weight))) for g in np.unique(groups)}
        old = dict(self.unit_scale_)
        self.unit_scale_ = {g: old.get(g, old.get("*", 1.0)) * scale.get(g, np.exp(common))
                            for g in sorted(set(old) | set(scale) | {"*"})}
        self._tables = {}

    def _calibrate_models(self, models: pd.DataFrame, prior_weight: float) -> None:
        y = models[self.statistic_].to_numpy(float)
        parts = []  # per config: Σ unit ms by calibration group
        for units in self._model_units(models):
            ms = self.scale_ * self.predict(units) * units["weight"].to_numpy()
            parts.append(pd.Series(ms).groupby([_calibration_group(k, s)
                                                for k, s in zip(units["layer"], units["stage"])]).sum())
        parts = pd.DataFrame(parts).fillna(0.0)
        P = parts.to_numpy()
        common = float(np.median(y / (P.sum(axis=1) + self.overhead_ms_)))
        typical = float(y.mean())
        w = np.sqrt(prior_weight)
        G = P.shape[1]
        A = np.vstack([np.column_stack([P, np.ones(len(y))]) / y[:, None],
                       w * np.eye(G + 1)[:G], w * np.eye(G + 1)[G:] / typical])
        b = np.concatenate([np.ones(len(y)), np.full(G, w * common), [w * common * self.overhead_ms_ / typical]])
        theta = lsq_linear(A, b, bounds=(0.0, np.inf)).x
        old = dict(self.unit_scale_)
        fitted = dict(zip(parts.columns, theta[:G]))  # groups these models do not run keep the common scale
        self.unit_scale_ = {g: old.get(g, old.get("*", 1.0)) * fitted.get(g, common)
                            for g in sorted(set(old) | set(fitted) | {"*"})}
        self.overhead_ms_ = float(theta[G])
        self._tables = {}

    # ------------------------------------------------------------ persistence
    def get_params(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "n_estimators": self.n_estimators, "max_depth": self.max_depth,
                "learning_rate": self.learning_rate, "overhead_fraction": self.overhead_fraction,
                "random_state": self.random_state}

    def to_dict(self) -> dict[str, Any]:
        """Metadata and boosters (xgboost JSON) as one JSON-able document."""
        self._check_fitted()
        meta = {
            **header(FORMAT, SCHEMA_VERSION), "hardware": self.hardware_,
            "estimated": self.estimated_, "estimate": self.estimate_, "statistic": self.statistic_,
            "dtype": self.dtype_, "threads": self.threads_, "fingerprint": self.fingerprint_,
            "features": list(FEATURES), "params": self.get_params(), "scale": self.scale_,
            "overhead_ms": self.overhead_ms_, "ms_per_gflop": self.ms_per_gflop_, "unit_scale": self.unit_scale_,
            "calibration": self.calibration_, "metrics": self.metrics_, "fit_keys": self.fit_keys_,
            "versions": {"sparsevit_sdk": __version__, "xgboost": xgb.__version__, "numpy": np.__version__,
                         "pandas": pd.__version__, "python": platform.python_version()},
        }
        units = {kind: {"linear": [float(c) for c in self.linear_[kind]],
                        "booster": json.loads(self.boosters_[kind].save_raw("json"))} for kind in UNIT_KINDS}
        return {**_finite(meta), "units": units}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "predictor") -> LatencyPredictor:
        """Inverse of :meth:`to_dict`; a document of another format or version, or with any
        field of the wrong type, sign or range, is refused naming ``source`` and the field."""
        refit = "re-create it with `sparsevit-fit --profiles profiles/<hw> --out <file>`"
        check_header(data, FORMAT, SCHEMA_VERSION, source=source, what="latency predictor", fix=refit)
        if data.get("features") != list(FEATURES):
            raise DocumentError(f"{source}: the predictor was fitted on features {data.get('features')}, this "
                                f"sparsevit-sdk computes {list(FEATURES)}; {refit}")
        doc = Field(data, source=source, what="predictor file", fix=refit)
        params = doc["params"]
        new = cls(statistic=params["statistic"].text(("auto", *STATISTICS)),
                  n_estimators=params["n_estimators"].number(integer=True, minimum=1),
                  max_depth=params["max_depth"].number(integer=True, minimum=0),
                  learning_rate=params["learning_rate"].number(above=0),
                  overhead_fraction=params["overhead_fraction"].number(minimum=0, maximum=1),
                  random_state=params["random_state"].number(integer=True))
        new.linear_, new.boosters_ = {}, {}
        for kind in UNIT_KINDS:
            unit = doc["units"][kind]
            linear = unit["linear"]  # c0 + c1·FLOPs + c2·bytes, each >= 0 (see _fit_kind)
            new.linear_[kind] = np.array([c.number(minimum=0) for c in linear.elements(length=3)])
            if not new.linear_[kind].any():
                raise linear.error("is all zeros: the analytic base would be 0 ms")
            new.boosters_[kind] = xgb.Booster()
            try:
                new.boosters_[kind].load_model(bytearray(json.dumps(unit["booster"].mapping()).encode()))
            except xgb.core.XGBoostError as err:
                raise unit["booster"].error(f"is not a model xgboost {xgb.__version__} can load") from err
        new.hardware_, new.estimated_ = doc["hardware"].text(), doc["estimated"].flag()
        new.estimate_ = None if doc["estimate"].value is None else _read_estimate(doc["estimate"])
        new.statistic_, new.dtype_ = doc["statistic"].text(STATISTICS), doc["dtype"].text(tuple(DTYPE_BYTES))
        new.threads_ = [t.number(integer=True, minimum=1) for t in doc["threads"].elements(nonempty=True)]
        new.fingerprint_ = doc["fingerprint"].mapping()
        new.scale_, new.overhead_ms_ = doc["scale"].number(above=0), doc["overhead_ms"].number(minimum=0)
        ms_per_gflop = doc["ms_per_gflop"].number(above=0, nullable=True)  # null: no whole-model rows
        new.ms_per_gflop_ = float("nan") if ms_per_gflop is None else ms_per_gflop
        new.unit_scale_ = {group: scale.number(minimum=0) for group, scale in doc["unit_scale"].items()}
        new.calibration_, new.metrics_ = doc["calibration"].mapping(), doc["metrics"].mapping()
        new.fit_keys_ = [key.text() for key in doc["fit_keys"].elements()]
        new._tables = {}
        return new

    def save(self, path: str | os.PathLike) -> Path:
        """Write one JSON file (never a pickle), atomically: a failed write keeps the previous file."""
        return write_json(path, self.to_dict(), separators=(",", ":"))

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> LatencyPredictor:
        """A predictor file, or a shipped one by name (``"cpu"`` → ``predictors/cpu.json``)."""
        shipped = shipped_predictors()
        path = Path(name_or_path)
        if not path.is_file():
            if str(name_or_path) not in shipped:
                raise ValueError(
                    f"no predictor file {str(name_or_path)!r} and no shipped predictor of that name (shipped: "
                    f"{', '.join(shipped) or 'none'}); for a target without measurements use "
                    f"LatencyPredictor.for_hardware({str(name_or_path)!r}), which gives a spec-based estimate")
            path = shipped[str(name_or_path)]
        data = read_json(path, what="latency predictor",
                         fix="predictors are JSON files written by `sparsevit-fit`, never pickles")
        return cls.from_dict(data, str(path))


def _read_estimate(estimate: Field) -> dict[str, Any]:
    """The ``estimate`` of a spec-based predictor: what :meth:`LatencyPredictor._rescale` reads."""
    estimate["source"].text()
    estimate["source_dtype"].text(tuple(DTYPE_BYTES))
    for spec in (estimate["source_spec"], estimate["target_spec"]):
        for name in ("peak_fp32_tflops", "peak_fp16_tflops", "mem_bw_gbs"):
            spec[name].number(above=0)
        spec["op_overhead_us"].number(minimum=0)
    return estimate.value


def _finite(obj: Any) -> Any:
    """NaN/inf → None, so files are strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
