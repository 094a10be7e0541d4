"""LatencyPredictor: per-layer xgboost models fitted on profiled units, summed to a whole model.

The estimator, scikit-learn style: parameters set in ``__init__``, everything learned in one
immutable record, ``learned_`` (:class:`.state.Learned`), which only this class assigns.  The
work is done by functions of that record, each returning a new one: :mod:`.fitting` (fit on a
profile), :mod:`.transfer` (estimate another GPU, calibrate to a device), :mod:`.persistence`
(JSON files; nothing is ever pickled), and the unit-cost model they all price with,
:mod:`.unit_model`; :mod:`.judging` scores a record on held-out rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

from .._atomic import write_json
from .._data import shipped_predictors
from ..arch import check_input_shape
from ..config import SparsityConfig
from ..dataset.schema import HOUR_MS, validate_frame
from ..hardware import get_hardware
from ..sparse.convert import sparse_backbone
from . import fitting, judging, persistence, transfer
from .rest import rest_key
from .state import Learned
from .unit_model import Tables, block_scales, unit_ms

__all__ = ["LatencyPredictor"]


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

    def _learn(self, learned: Learned) -> LatencyPredictor:
        """The one place ``learned_`` is assigned; its cost tables go with it."""
        self.learned_ = learned
        self._tables = Tables(learned)
        return self

    @property
    def _state(self) -> Learned:
        if not hasattr(self, "learned_"):
            raise NotFittedError("this LatencyPredictor is not fitted; call fit(df) or LatencyPredictor.load(name)")
        return self.learned_

    @property
    def hw(self) -> str:
        """The target this predictor predicts."""
        return self._state.hw

    @property
    def estimated(self) -> bool:
        """True when no measurement of this device stands behind the predictions."""
        return self._state.estimated

    @property
    def expected_error(self) -> dict[str, Any] | None:
        """How far off this predictor was on whole models it was not fitted on (``within_10`` %,
        ``mape`` %, ``models``, ``how``, ``poor``), or None for a spec estimate: the confidence every
        prediction of it carries (``± mape %`` in summaries)."""
        return judging.expected_error(self._state)

    def __repr__(self) -> str:
        if not hasattr(self, "learned_"):
            return "LatencyPredictor(not fitted)"
        kind = "estimated from specs" if self.learned_.estimated else f"measured, {self.learned_.statistic}"
        return f"LatencyPredictor({self.learned_.hw}, {kind})"

    # ------------------------------------------------------------------ fitting
    def fit(self, df: pd.DataFrame, *, fingerprint: dict | None = None) -> LatencyPredictor:
        """Fit unit models on the layer rows of one device's profile ``df`` and the overhead
        on ``overhead_fraction`` of its whole-model rows; judge on the rest (``learned_.metrics``).

        ``fingerprint`` defaults to the sidecar(s) in ``df.attrs`` (as ``load_profiles`` and
        ``profile_model`` leave them), so validation later knows the device and its clock."""
        return self._learn(fitting.fit(self.get_params(), df, fingerprint))

    # --------------------------------------------------------------- prediction
    def predict(self, layers: pd.DataFrame) -> np.ndarray:
        """Latency in ms of every unit row (profile-schema descriptor columns)."""
        return unit_ms(self._state, layers)

    def predict_configs(self, model, input_shape: Sequence[int], configs: Sequence[SparsityConfig],
                        *, dtype: str | None = None) -> np.ndarray:
        """Whole-model latency (ms) of ``model`` at every config, for inputs ``(B, C, H, W)``.

        Unit costs are tabulated once per (model, input shape, dtype) and sparsity value,
        so a batch of configs costs a few array lookups.
        """
        learned = self._state
        arch = sparse_backbone(model).architecture
        shape = check_input_shape(input_shape, arch.in_chans)  # no number for a shape the model refuses
        for cfg in {cfg.signature: cfg for cfg in configs}.values():
            cfg.check_model(arch.signature)
        table = self._tables(arch, shape, dtype or learned.dtype)
        out = np.empty(len(configs))
        for granularity in {cfg.granularity for cfg in configs}:
            idx = [i for i, cfg in enumerate(configs) if cfg.granularity == granularity]
            out[idx] = table.layer_sum(np.array([configs[i].ratios for i in idx], dtype=float), granularity)
        ms = block_scales(learned, [arch.signature])[0] * out + learned.overhead_ms
        bad = ~(np.isfinite(ms) & (ms > 0) & (ms < HOUR_MS))
        if bad.any():  # a number no device can take is an error, never a latency
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"the {learned.hw} predictor gives {ms[i]:.6g} ms for {arch.signature} at "
                             f"{configs[i]} and input {'x'.join(map(str, shape))}: not a latency (it must be positive, "
                             f"finite and under an hour); the predictor is damaged or was fitted on bad data: "
                             f"{persistence.REFIT}")
        return ms

    def predict_config(self, model, input_shape: Sequence[int], config: SparsityConfig,
                       *, dtype: str | None = None) -> float:
        """Whole-model latency (ms) of ``model`` at ``config``.

        Args:
            model: a built-in model, a :class:`SparseSwin` or a model :func:`sparsify` made; its
                backbone's architecture is what is priced (the rest of a whole model is not).
            input_shape: ``(B, C, H, W)`` in pixels.
            config: a :class:`SparsityConfig` of this model.
            dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (default: the predictor's).

        Returns:
            The predicted latency in milliseconds: the sum of the units' predictions plus the
            fitted per-device overhead. :attr:`expected_error` says how far to trust it.

        Raises:
            ValueError: ``config`` is for another model, or the model refuses ``input_shape``.
        """
        return float(self.predict_configs(model, input_shape, [config], dtype=dtype)[0])

    def rest_for(self, model_key: str, input_shape: Sequence[int], *, dtype: str | None = None) -> dict | None:
        """What the whole model ``model_key`` (:meth:`ModelForward.key`) cost beyond its backbone
        where this predictor's profile timed it, at ``input_shape`` (``{"ms", "calls", "whole_ms",
        "backbone_ms"}``), or None if it was not timed there."""
        learned = self._state
        return learned.rest.get(rest_key(model_key, input_shape, dtype or learned.dtype, learned.runtime))

    # --------------------------------------------------------------- judging
    def held_out(self, df: pd.DataFrame) -> pd.DataFrame:
        """The whole-model rows of ``df`` never used in fitting, with this predictor's
        ``predicted_ms`` next to the measured ``learned_.statistic`` column: what :meth:`evaluate`
        scores and ``sparsevit-fit --plot`` draws."""
        df = validate_frame(df, "evaluation data")
        return judging.held_out(self._state, df, self._tables)

    def predict_models(self, models: pd.DataFrame, df: pd.DataFrame) -> np.ndarray:
        """Predicted ms of the whole-model rows ``models`` of the profile ``df``, fitted on or not:
        :meth:`held_out` without leaving out the rows a fit or calibration used."""
        return judging.models_ms(self._state, models, validate_frame(df, "evaluation data"), self._tables)

    def evaluate(self, df: pd.DataFrame) -> dict[str, Any]:
        """Accuracy on the whole-model rows of ``df`` that were never used in fitting, next to
        two baselines: FLOPs-proportional (``ms_per_gflop · GFLOPs``) and a lookup table
        (sum of the measured units of ``df`` itself, as once-for-all does; ``coverage`` says
        how many configs it could answer)."""
        df = validate_frame(df, "evaluation data")
        return judging.evaluate(self._state, df, self._tables)

    # ------------------------------------------------------------ new devices
    @classmethod
    def for_hardware(cls, name: str) -> LatencyPredictor:
        """The measured predictor of target ``name``, or for a GPU nobody has profiled an
        estimate (``estimated`` is True and a warning says so): the cost model of
        :mod:`.gpu_model`, fitted to published Swin measurements, priced on its specs.
        A predictor of the device you are on: :func:`sparsevit_sdk.local.for_device`."""
        target = get_hardware(name)
        if target.predictor is not None:
            return cls.load(target.predictor)
        if target.spec.kind != "gpu":
            raise ValueError(f"no measured predictor for the CPU target {name!r} and no estimate for CPUs (they "
                             "differ too much for specs to say); on that CPU use hw='local' (for_device) or "
                             "profile it with `sparsevit-profile` and fit with `sparsevit-fit`")
        return cls()._learn(transfer.estimate(name, target.spec))

    @classmethod
    def calibrate(cls, base: LatencyPredictor, df: pd.DataFrame, *, prior_weight: float = 1.0) -> LatencyPredictor:
        """Adapt ``base`` to the device of ``df`` from a few measurements (HELP needs ~10).

        Layer rows rescale each calibration group (block pairs per stage, the small units
        together) by its mean log-ratio, shrunk toward the common one; whole-model rows fit
        one scale per group and the overhead by least squares, pulled toward a single common
        scale with weight ``prior_weight`` so ten samples cannot overfit.  The calibrated
        rows are excluded from :meth:`evaluate`.

        Args:
            base: the fitted predictor to adapt (usually the shipped one nearest the device).
            df: profile rows measured on the new device (the dataset schema; a few whole models
                and units suffice).
            prior_weight: how strongly the per-group scales are pulled toward one common scale.

        Returns:
            A new, calibrated :class:`LatencyPredictor`; ``base`` is left as it was.
        """
        return cls.calibrate_with_folds(base, df, prior_weight=prior_weight)[0]

    @classmethod
    def calibrate_with_folds(cls, base: LatencyPredictor, df: pd.DataFrame, *,
                             prior_weight: float = 1.0) -> tuple[LatencyPredictor, list[LatencyPredictor]]:
        """:meth:`calibrate`, and one predictor per cross-validation fold, each fitted without that fold's
        whole models (none under five of them): where they disagree on a config, measuring it teaches the
        calibration most."""
        params = base.get_params()
        learned, folds = transfer.calibrate_with_folds(base._state, df, statistic=params["statistic"],
                                                       prior_weight=prior_weight)
        return cls(**params)._learn(learned), [cls(**params)._learn(fold) for fold in folds]

    def releveled(self, factor: float) -> LatencyPredictor:
        """A copy whose every whole-model prediction is ``factor`` times this one's (recorded as
        ``learned_.calibration["level"]``): the dense model, timed again, ran ``factor`` times as long as
        predicted, so the machine has slowed down or sped up since it was measured, and its speed-ups (which
        it still predicts) are better anchored to the machine as it is now."""
        if not factor > 0:
            raise ValueError(f"a level factor must be positive, got {factor}")
        state = self._state
        scale = {kind: factor * value for kind, value in state.scale.items()} or dict.fromkeys(state.blocks, factor)
        level = factor * state.calibration.get("level", 1.0)
        return type(self)(**self.get_params())._learn(state.replace(
            scale=scale, overhead_ms=factor * state.overhead_ms, calibration={**state.calibration, "level": level}))

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """Metadata and boosters (xgboost JSON) as one JSON-able document."""
        return persistence.to_dict(self.get_params(), self._state)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "predictor") -> LatencyPredictor:
        """Inverse of :meth:`to_dict`; a document of another format or version, or with any
        field of the wrong type, sign or range, is refused naming ``source`` and the field."""
        params, learned = persistence.from_dict(data, source)
        return cls(**params)._learn(learned)

    def save(self, path: str | os.PathLike) -> Path:
        """Write one JSON file (never a pickle), atomically: a failed write keeps the previous file."""
        return write_json(path, self.to_dict(), separators=(",", ":"))

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> LatencyPredictor:
        """A predictor file, or a shipped one by name (``"cpu"`` → ``predictors/cpu.json``).

        Args:
            name_or_path: a shipped predictor's name (``"cpu"``, ``"intel-xeon-amx"``,
                ``"intel-xeon-amx-2t"``) or the path of a JSON file :meth:`save` wrote.

        Returns:
            The fitted :class:`LatencyPredictor`, validated down to its xgboost trees.

        Raises:
            DocumentError: the file is damaged, of another kind or of an unknown schema; the
                message names the file, the field and the fix.
            ValueError: no such file and no shipped predictor of that name (the message lists the
                shipped ones).
        """
        params, learned = persistence.load(name_or_path, shipped_predictors())
        return cls(**params)._learn(learned)
