"""A calibration that measures until it is good, or until its time is up.

At the deployment shape the whole models are the ground truth: a prediction is judged by what the
model measures when it runs.  So the units are timed once (what the predictor adds up), and the
whole models in steps: a first few (uniform and random configs), then, while the predictor's error
on whole models held out of its fit is above target, the configs where its cross-validation folds
disagree most, since one of those teaches the fit most.  It stops when :data:`TARGET_WITHIN_10` %
of the held-out models fall within ±10 %, or at its time limit, and records which.

Whole models are timed as :func:`~sparsevit_sdk.profiler.timing.measure_latency` and ``validate()``
time them (warm-up calls, then repeats in interleaved rounds, the quietest round kept), apart from
the unit sweep: a model timed straight after a run of small units ran up to 20 % slower than the
same model timed alone on one EPYC VM (benchmarks/RESULTS.md), and the fit learned that gap.  The dense
model, the denominator of every speed-up and the base of a relative budget, is timed again in every step
and keeps its quietest: timed once, in the first step, it ran 4-9 % slower than it did minutes later.  A
reference probe is timed after every step; a step timed while the probe ran more than
:data:`~sparsevit_sdk.profiler.reference.CHANGED` slower than its fastest is timed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .config import SparsityConfig
from .dataset.schema import stable_statistic
from .predictor.latency import LatencyPredictor
from .profiler.forward import Call
from .profiler.plan import SweepSettings
from .profiler.reference import CHANGED, reference_ms
from .profiler.sweep import profile_model
from .profiler.timing import measure_latency
from .sparse.convert import search_space, set_sparsity, sparse_backbone
from .sparse.state import preserved

logger = logging.getLogger(__name__)

TARGET_WITHIN_10 = 90.0  # % of held-out whole models within ±10 % at which a calibration stops measuring
MIN_MODELS = 8  # whole models measured before a cross-validated figure is trusted to stop on
STEP = 4  # whole models added per step
CANDIDATES = 64  # random configs the folds are asked about per step
# units: every unit at every grid sparsity, in two rounds (each row keeps its quieter round)
UNITS = SweepSettings(warmup=1, repeats=5, model_repeats=1, random_configs=0, rounds=2)
# a model slower than SLOW_MS a forward has its units timed once, lighter: at Swin-T 672 the unit sweep took a quarter
# of a two-minute limit, and whole models, which calibration fits, decide its accuracy (its units' curves got weight 0)
SLOW_UNITS = SweepSettings(warmup=1, repeats=3, model_repeats=1, random_configs=0, rounds=1)
SLOW_MS = 500.0
# whole models as a user times them: warm-up calls first, rounds interleaved over the step's configs.  A model
# under CHEAP_MS costs less to time than a step's fit, so it is timed harder; in a compiled or exported runtime
# each round compiles or exports every config again, which costs more than timing.
MODELS = SweepSettings(warmup=2, repeats=1, model_repeats=4, random_configs=0, rounds=2)
CHEAP_MODELS = SweepSettings(warmup=2, repeats=1, model_repeats=6, random_configs=0, rounds=3)
RUNTIME_MODELS = SweepSettings(warmup=2, repeats=1, model_repeats=4, random_configs=0, rounds=1)
CHEAP_MS = 100.0
SAFETY = 1.2  # a step is begun only with this much more time left than it is expected to take
MAX_DEFAULT_S = 120.0  # the default limit's ceiling, whatever the model costs


def default_time_limit(dense_ms: float) -> float:
    """Seconds a calibration may take: 200 dense forwards, at least 60 and at most :data:`MAX_DEFAULT_S` (a
    Swin-T at 672 px, 0.7-1.3 s a forward on a 2-core CPU, gets 2 minutes; a longer one is asked for with
    ``time_limit=``)."""
    return min(MAX_DEFAULT_S, max(60.0, 0.2 * dense_ms))


def dense_ms_now(model: nn.Module, shape: tuple[int, ...], *, expected_ms: float, threads: int, clock: str,
                 runtime: str) -> float:
    """The dense ``model`` (a sparse backbone) timed now on this CPU as a calibration times its whole models
    (:data:`MODELS`, or :data:`CHEAP_MODELS` under :data:`CHEAP_MS`), its quietest round's ``p10_ms``: a row
    on the calibration's own scale, for a level check (``expected_ms``, its earlier row, picks how hard)."""
    settings = (RUNTIME_MODELS if runtime != "eager" else CHEAP_MODELS if expected_ms < CHEAP_MS else MODELS)
    with preserved(model, training=False):
        set_sparsity(model, search_space(model).dense())
        return min(measure_latency(model, shape, "cpu", warmup=settings.warmup, repeats=settings.model_repeats,
                                   threads=threads, clock=clock, runtime=runtime).p10_ms
                   for _ in range(settings.rounds))


@dataclass
class Step:
    """Whole models measured so far (their rows), and the fastest reference probe seen."""

    rows: pd.DataFrame
    probe_ms: float


def calibrate_here(base: LatencyPredictor, model: nn.Module, shape: tuple[int, ...], device: torch.device, *,
                   dtype: str, threads: int | None, clock: str, runtime: str, call: Call, hw: str,
                   time_limit: float | None = None, seed: int = 0, progress: bool = True,
                   started: float | None = None) -> LatencyPredictor:
    """``base`` calibrated to ``model`` at ``shape`` on ``device``, measured until its held-out whole models
    meet :data:`TARGET_WITHIN_10` or ``time_limit`` seconds (None: :func:`default_time_limit`) have passed.
    Its ``learned_.calibration`` records the target, the limit, the seconds taken, whether the target was
    met, the steps and the steps timed again, and ``probe_ms``, the machine's speed as calibrated.  The limit
    counts from ``started`` (a ``time.monotonic()``; default: now), so a caller's own setup counts too."""
    start = time.monotonic() if started is None else started
    on_cpu = device.type == "cpu"
    probe = reference_ms(clock) if on_cpu else float("nan")
    statistic = stable_statistic(device, profile=True)
    sweep = dict(resolutions=[shape[2:]], batches=[shape[0]], device=device, dtype=dtype, hw=hw, threads=threads,
                 clock=clock, runtime=runtime, call=call, seed=seed)
    first_ms = measure_latency(model, shape, device, warmup=1, repeats=1, threads=threads, clock=clock).p10_ms
    units = profile_model(model, settings=SLOW_UNITS if first_ms > SLOW_MS else UNITS, configs=[], progress=progress,
                          **sweep)
    space = search_space(sparse_backbone(model))
    rng = np.random.default_rng(seed)
    first = [space.uniform(s) for s in (0.0, 0.4, 0.8)] + _fresh(space, rng, 2, set())
    settings = MODELS if runtime == "eager" else RUNTIME_MODELS  # until the first step has timed the dense model
    step, remeasured, steps = Step(pd.DataFrame(), probe), 0, 0
    measured: set[SparsityConfig] = set()
    configs = first
    while True:
        began = time.monotonic()
        rows = profile_model(model, settings=settings, units=False, configs=configs, progress=False, **sweep)
        if on_cpu:
            now = reference_ms(clock)
            if now > step.probe_ms * (1 + CHANGED) and _left(start, time_limit, began, configs, settings) > 0:
                logger.info("the reference probe ran %.0f %% slow while these models were timed: timing them again",
                            (now / step.probe_ms - 1) * 100)
                again = profile_model(model, settings=settings, units=False, configs=configs, progress=False, **sweep)
                rows, remeasured = _quieter(rows, again, statistic), remeasured + 1
                now = min(now, reference_ms(clock))
            step.probe_ms = min(step.probe_ms, now)
        step.rows = _quieter(step.rows, rows, statistic)  # the dense model's row: its quietest step
        measured |= set(configs)
        steps += 1
        predictor, folds = LatencyPredictor.calibrate_with_folds(base, _together(units, step.rows))
        dense_ms = _dense_ms(step.rows, statistic)
        if time_limit is None:
            time_limit = default_time_limit(dense_ms)
        timed, settings = settings, CHEAP_MODELS if runtime == "eager" and dense_ms < CHEAP_MS else settings
        error = predictor.expected_error or {}
        met = len(measured) >= MIN_MODELS and error.get("within_10", 0.0) >= TARGET_WITHIN_10
        logger.info("calibration step %d: %d whole models, %.0f %% within ±10 %% held out (%.0f s of %.0f s)",
                    steps, len(measured), error.get("within_10", float("nan")), time.monotonic() - start, time_limit)
        if met or _left(start, time_limit, began, configs, timed, STEP + 1, settings) <= 0:
            break
        configs = _most_disputed(folds, model, shape, _fresh(space, rng, CANDIDATES, measured)) or []
        if not configs:
            break
        configs.append(space.dense())  # every speed-up's denominator and the budget's base: timed in every step
    seconds = time.monotonic() - start
    record = {"target_within_10": TARGET_WITHIN_10, "time_limit_s": round(time_limit, 1), "seconds": round(seconds, 1),
              "met": bool(met), "steps": steps, "remeasured_steps": remeasured, "dense_ms": dense_ms}
    if on_cpu:
        record["probe_ms"] = step.probe_ms
    predictor.learned_.calibration.update(record)
    return predictor


def _left(start: float, time_limit: float | None, step_began: float, configs: Sequence[SparsityConfig],
          settings: SweepSettings, n: int | None = None, next_settings: SweepSettings | None = None) -> float:
    """Seconds that would be left after timing ``n`` configs (default: ``configs`` again) with ``next_settings``
    (default: ``settings``), priced by the step that began at ``step_began`` timing ``configs`` with ``settings``,
    with :data:`SAFETY` in hand (any, before the limit is known)."""
    if time_limit is None:
        return float("inf")
    now = time.monotonic()
    calls = (next_settings or settings).model_calls * (len(configs) if n is None else n)
    return time_limit - (now - start) - SAFETY * (now - step_began) * calls / (settings.model_calls * len(configs))


def _fresh(space, rng: np.random.Generator, n: int, seen: set[SparsityConfig]) -> list[SparsityConfig]:
    """Up to ``n`` distinct random configs not in ``seen`` (fewer if the space is nearly exhausted)."""
    out: list[SparsityConfig] = []
    for _ in range(20 * n):
        if len(out) == n:
            break
        cfg = space.sample(rng)
        if cfg not in seen and cfg not in out:
            out.append(cfg)
    return out


def _most_disputed(folds: Sequence[LatencyPredictor], model: nn.Module, shape: Sequence[int],
                   candidates: list[SparsityConfig]) -> list[SparsityConfig]:
    """The :data:`STEP` candidates the fold predictors disagree on most (spread of their log-ms); the first
    candidates where there are no folds yet."""
    if len(folds) < 2 or not candidates:
        return candidates[:STEP]
    log_ms = np.log([fold.predict_configs(model, shape, candidates) for fold in folds])
    order = np.argsort(-log_ms.std(axis=0), kind="stable")
    return [candidates[i] for i in order[:STEP]]


def _quieter(first: pd.DataFrame, second: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """Per measured row, the timing of the two with the lower ``statistic`` (load only ever slows one down)."""
    both = pd.concat([first, second], ignore_index=True)
    key = ["layer", "model", "config"]
    return both.sort_values(statistic, kind="stable").drop_duplicates(key).reset_index(drop=True)


def _together(units: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """The unit and whole-model rows as one profile, keeping the device sidecar the sweep attached."""
    frame = pd.concat([units, models], ignore_index=True)
    frame.attrs["fingerprints"] = {**units.attrs.get("fingerprints", {}), **models.attrs.get("fingerprints", {})}
    return frame


def _dense_ms(models: pd.DataFrame, statistic: str) -> float:
    """The measured dense backbone (the fastest model row at sparsity 0)."""
    dense = models[(models["layer"] == "model") & (models["sparsity"] == 0)]
    return float(dense[statistic].min()) if len(dense) else float(models[statistic].max())
