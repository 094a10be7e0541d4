"""SearchSession: a model, a target device and a budget in; a validated config out.

    result = SearchSession(model, hw="jetson-orin", latency_budget=0.7).run()
    result.best, result.predicted_ms, result.validate("cpu")

The session wires the real pieces into the engine: the target's latency predictor
(measured, or a spec-based estimate flagged ``estimated``) as the batch latency function,
an accuracy proxy (by default the label-free agreement with the dense model) and a search
strategy (``strategy="ga"`` by default; ``"nsga2"``, ``"random"`` or your own, see :mod:`.strategy`).

Scale-out: ``executor="process"`` or ``"ray"`` (or any object with ``map``) spreads the proxy
calls; ``checkpoint=path`` saves the search after every generation, and
``SearchSession.resume(path, model).run()`` continues it to the result an unbroken run gives.

A search ends in minutes by default, not hours: after ``timeout_s`` (10 min) it stops, and
its summary says so; ``max_evaluations`` and ``patience`` bound it further.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .._atomic import check_writable
from ..arch import check_input_shape
from ..checks import Count, Resolution, checked, optional
from ..config import SearchSpace, SparsityConfig
from ..demo import default_proxy
from ..local import LOCAL
from ..models import input_shape_for
from ..predictor.latency import LatencyPredictor
from ..profiler.forward import Call, ModelForward, RestOfModel
from ..sparse.convert import search_space, sparse_backbone
from ..target import Target
from .checkpoint import SearchState, owning, read_checkpoint, write_checkpoint
from .engine import SearchEngine
from .executors import resolve_executor
from .finalists import band_of, measure_finalists
from .fingerprint import check_same_model, model_fingerprint
from .protocols import Executor, ExecutorLost, Proxy, proxy_name
from .result import SearchResult
from .resuming import check_given
from .settings import (
    DEFAULT_BUDGET,
    SHAPE_FIELDS,
    SearchSettings,
    settings_from,
)
from .settings import DEFAULT_TIMEOUT_S as DEFAULT_TIMEOUT_S  # importable from here, as before
from .strategies import DEFAULT_STRATEGY, make_strategy, resolve_strategy
from .strategy import SearchStrategy
from .whole import RestMs, check_reachable, predict_calls, rest_of_model

logger = logging.getLogger(__name__)

# what the session's own arguments accept (sparsevit_sdk.checks); the settings check theirs
ProxyResolution = optional(Resolution, "the input's")


class SearchSession:
    """Search per-knob sparsity of ``model`` for target ``hw`` under a latency budget.

    Latencies are the whole model's as it is run: the backbone's prediction plus the rest (heads,
    decoders), measured here at sparsity 0 beside the backbone, or estimated for another target and
    flagged so (:mod:`.whole`); a bare sparse Swin has no rest.  The search stops at the first limit
    (``timeout_s``, ``max_evaluations``, ``patience``); ``result.stopped`` and ``summary()`` say which.
    Making a session only checks its arguments (and runs the model once, as called); what takes time
    (a local calibration, timing the rest of the model, the default proxy) happens in :meth:`run`.

    Args:
        model: a built-in model, a :class:`SparseSwin` or any model :func:`sparsify` made.
        hw: a target name (``sparsevit_sdk.hardware.list_hardware()``), ``"local"`` (this CPU:
            :func:`~sparsevit_sdk.local.for_device` measures for a minute or two when :meth:`run` first
            needs it, then reuses its cached calibration), a predictor file's path, a fitted
            :class:`LatencyPredictor` or a :class:`~sparsevit_sdk.target.Target` (all resolved by
            ``Target.resolve``: :mod:`sparsevit_sdk.target`).
        proxy: ``proxy(cfg) -> float``, higher is better; None: the label-free agreement with the
            dense model on demo images (a warning says it ranks by how little outputs change).
        input_shape: the deployment input ``(B, C, H, W)``; default: the size the model declares
            (:func:`~sparsevit_sdk.models.input_shape_for`), else 672x672 (SparseViT's); another
            size is named in a warning.
        space: the knobs and grid (default: :func:`search_space` of ``model``).
        executor: "local" (default), "process", "ray" or any object with ``map(fn, iterable)``;
            proxy calls go through it, so workers need their own model (processes, not threads).
        checkpoint: a file rewritten after every generation; continue with :meth:`resume`.
        progress: show progress bars.
        proxy_images: how many demo images the default proxy scores.
        proxy_resolution: their ``(H, W)`` (default: the input's).
        runtime: "eager", "compiled" or "onnxruntime" (default: the predictor's); ``hw="local"``
            calibrates in it, and a predictor made for another runtime is refused.
        call: how the model is run: None (``model(x)``; ``model(pixel_values=x)`` for Hugging
            Face), a method name (``"forward_features"``) or ``call(model, x)``.
        rest_ms: what the model costs beyond its backbone, in ms, instead of measuring it.
        strategy: ``"ga"`` (default, SparseViT's reference: ``population`` 100, the top
            ``parents`` 25 breed, for ``generations`` 20), ``"nsga2"`` (the same keywords),
            ``"random"`` (``samples``, ``generations``) or a strategy object (:mod:`.strategy`).
        settings: a :class:`SearchSettings` instead of its fields as keywords (``session.settings``).
        measure_finalists: time the Pareto front near the budget on this CPU and choose the best-scored
            config measured within it (default: where the predictor was calibrated on this CPU, ``hw="local"``,
            and the budget is the whole model's; see :mod:`.finalists`).
        **options: its fields: ``latency_budget`` (a share of the dense latency, default 0.7) or
            ``budget_ms``, of the whole model unless ``budget_of="backbone"``; ``seed``;
            ``retries`` (then a failed proxy call is recorded as failed); ``timeout_s`` (default
            600), ``max_evaluations``, ``patience`` (None: no limit); and the strategy's keywords.

    Raises:
        TypeError: an argument of the wrong type, or a keyword no setting or strategy takes.
        ValueError: a value out of range, a whole-model budget no config can reach (with the Amdahl
            bound), a search space for another model, or a predictor for another runtime.
    """

    @checked
    def __init__(
        self,
        model: nn.Module,
        hw: str | os.PathLike | LatencyPredictor | Target = "cpu",
        *,
        proxy: Proxy | None = None,
        input_shape: Sequence[int] | None = None,
        space: SearchSpace | None = None,
        executor: Executor | str | None = None,
        checkpoint: str | os.PathLike | None = None,
        progress: bool = True,
        proxy_images: Count = 8,
        proxy_resolution: ProxyResolution = None,
        runtime: str | None = None,
        call: Call = None,
        rest_ms: RestMs = None,
        strategy: str | SearchStrategy = DEFAULT_STRATEGY,
        settings: SearchSettings | None = None,
        measure_finalists: bool | None = None,
        **options: Any,
    ) -> None:
        self.strategy, options = resolve_strategy(strategy, options, caller="SearchSession")
        if settings is None and options.get("latency_budget") is None and options.get("budget_ms") is None:
            options["latency_budget"] = DEFAULT_BUDGET
        self.settings = settings_from(settings, options, caller="SearchSession")
        self.model = model
        self.backbone = sparse_backbone(model)
        self.input_shape = check_input_shape(input_shape_for(model, input_shape), self.backbone.in_chans)
        arch = self.backbone.architecture
        arch.check_fits(self.input_shape, fix="a smaller input_shape (--resolution)")
        if proxy is None and proxy_resolution is not None:
            arch.check_fits((proxy_images, *self.input_shape[1:2], *proxy_resolution),
                            fix="a smaller or no proxy_resolution (--proxy-resolution), or fewer proxy_images")
        self.space = space if space is not None else search_space(self.backbone)
        if self.space.signature != self.backbone.signature:
            raise ValueError(f"the search space is for {self.space.signature!r}, the model is "
                             f"{self.backbone.signature!r}; build it with search_space(model)")
        self.forward = ModelForward(model, call)
        if not self.forward.is_backbone:  # the model runs as called (one input's forwards): checked now, timed in run()
            self.forward.probe(torch.randn(*self.input_shape))
        self._hw, self._runtime, self._rest_ms, self._progress = hw, runtime, rest_ms, progress
        self._proxy, self._proxy_images, self._proxy_resolution = proxy, proxy_images, proxy_resolution
        self._executor, self._measure_finalists = executor, measure_finalists
        self.checkpoint = None if checkpoint is None else check_writable(checkpoint)  # before hours of search
        if hw != LOCAL:  # anything but a calibration is resolved and checked now; it, a proxy and timing wait for run()
            self.target  # noqa: B018 (resolved and checked)
            if rest_ms is not None or self.forward.is_backbone:
                self._check_reachable()
        self._resume_from: SearchState | None = None
        self._elapsed_before = 0.0  # search time spent before the checkpoint this session resumes
        self._started = time.perf_counter()

    @cached_property
    def target(self) -> Target:
        """Where latency is predicted: ``hw`` resolved (:meth:`Target.resolve`), on first use; with ``hw="local"``
        calibrated on this CPU at this model's backbone and input (cached after the first time)."""
        target = Target.resolve(self._hw, self.backbone, self.input_shape, runtime=self._runtime,
                                progress=self._progress)
        target.warn_if_elsewhere()
        return target

    @property
    def predictor(self) -> LatencyPredictor:
        """The target's latency predictor (``self.target.predictor``)."""
        return self.target.predictor

    @cached_property
    def rest(self) -> RestOfModel:
        """What the model costs beyond its backbone (timed here at sparsity 0 unless given), on first use."""
        return rest_of_model(self.forward, self.target, self.space, self.input_shape, rest_ms=self._rest_ms)

    @cached_property
    def proxy(self) -> Proxy:
        """The proxy given, or the default one (built on first use)."""
        if self._proxy is not None:
            return self._proxy
        shape = self.input_shape if self._proxy_resolution is None else (*self.input_shape[:2],
                                                                         *self._proxy_resolution)
        seed = self.settings.seed
        proxy = default_proxy(self.model, shape, num_images=self._proxy_images, seed=0 if seed is None else seed)
        logger.warning("no proxy given: configs are scored by %s, the label-free agreement of the sparse model's "
                       "outputs with the dense model's; pass proxy=AccuracyProxy(model, loader, metric=...) to "
                       "rank them by task accuracy", proxy_name(proxy))
        return proxy

    @cached_property
    def engine(self) -> SearchEngine:
        """The engine around the predictor, the rest and the proxy, after the budget is found reachable."""
        self._check_reachable()
        return SearchEngine(
            self.space, self._latency, self.proxy, strategy=self.strategy, executor=resolve_executor(self._executor),
            progress=self._progress, checkpoint=None if self.checkpoint is None else self._write_checkpoint,
            settings=self.settings)

    @property
    def measure_finalists(self) -> bool:
        """Whether :meth:`run` times its finalists here: by default where the predictor was calibrated on this CPU
        and the budget is the whole model's."""
        if self._measure_finalists is not None:
            return self._measure_finalists
        return self.target.calibrated_here and self.settings.budget_of == "model"

    @property
    def seed(self) -> int | None:
        return self.settings.seed

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        """What the scores and latencies are of, recorded in checkpoints (see :mod:`.fingerprint`)."""
        return model_fingerprint(self.forward, self.space, self.input_shape)

    def _latency(self, configs: list[SparsityConfig]) -> np.ndarray:
        """Predicted ms of ``configs`` in the budget's scope: the whole model, or the backbone."""
        ms = predict_calls(self.predictor, self.backbone, self.rest, self.input_shape, configs)
        return ms if self.settings.budget_of == "backbone" else self.rest.end_to_end(ms)

    def _check_reachable(self) -> None:
        """Refuse a whole-model budget that Amdahl's law puts out of reach, before any proxy call."""
        check_reachable(self._latency, self.space, self.settings, self.rest, self.predictor.hw, self.forward.describe)

    # ------------------------------------------------------------- checkpoints
    def _elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._started

    def _write_checkpoint(self, state: SearchState) -> None:
        """What rebuilds this session around the engine's state (the model and proxy excepted)."""
        write_checkpoint(self.checkpoint, state, {
            "hw": self.predictor.hw, "runtime": self.predictor.learned_.runtime,
            "input_shape": list(self.input_shape), "call": self.forward.describe, "rest": self.rest.to_dict(),
            "proxy_name": proxy_name(self.proxy), "elapsed_s": self._elapsed(), "model": self.fingerprint,
            "proxy_images": self._proxy_images, "proxy_resolution": self._proxy_resolution,
            "level": self.predictor.learned_.calibration.get("level", 1.0)})  # see Target.rechecked

    @classmethod
    @checked
    def resume(
        cls,
        path: str | os.PathLike,
        model: nn.Module,
        *,
        hw: str | os.PathLike | LatencyPredictor | Target | None = None,
        proxy: Proxy | None = None,
        executor: Executor | str | None = None,
        progress: bool = True,
        proxy_images: optional(Count, "the checkpoint's") = None,
        proxy_resolution: optional(Resolution, "the checkpoint's") = None,
        call: Call = None,
        strategy: str | SearchStrategy | None = None,
        **settings: Any,
    ) -> SearchSession:
        """A session that continues the search checkpointed at ``path`` when :meth:`run` is called.

        Pass the same ``model`` (its weights and head: a checkpoint records their fingerprint, and
        another model's is refused) and ``proxy`` (None: the default proxy, on the checkpoint's
        ``proxy_images`` and ``proxy_resolution`` unless given) and, if the search used a predictor
        object rather than a target name, that predictor as ``hw``, and the same ``call``; the rest
        of the model is the checkpoint's (not measured again, so every latency is the one the search
        started with); the executor may differ.  A built-in strategy is rebuilt from the checkpoint;
        a strategy of your own is passed again as ``strategy``, built as before.  The resumed run
        keeps checkpointing to ``path``.

        ``settings`` may hold this run's ``retries`` and limits, which are honoured: ``timeout_s``
        counts from this run's start, ``max_evaluations`` and ``patience`` count the whole search,
        so with the same ones it ends where an unbroken run would have.  Every other setting is the
        checkpoint's (``seed``, the budget, ``strategy`` by name and its options, ``input_shape``,
        ``runtime``): one given must equal it, or :class:`SettingsDiffer` lists those that differ.
        """
        state, info = read_checkpoint(path)
        if not info:
            raise ValueError(f"{path} was written around a bare SearchEngine, with no session to rebuild; continue "
                             "it with SearchEngine(...).run(read_checkpoint(path)[0])")
        s = state.settings
        backbone = sparse_backbone(model)
        if backbone.signature != s["signature"]:
            raise ValueError(f"{path} is a search of model {s['signature']!r}, not {backbone.signature!r}; pass the "
                             "model the search was started with")
        space = search_space(backbone, grid=s["grid"], granularity=s["granularity"], monotonic=s["monotonic"])
        if isinstance(strategy, str):
            settings["strategy"], strategy = strategy, None
        run = check_given(path, settings, recorded={
            **{name: s.get(name) for name in SHAPE_FIELDS}, "strategy": s["strategy"], **s["strategy_options"],
            "input_shape": tuple(info["input_shape"]), "runtime": info.get("runtime", "eager")})
        forward = ModelForward(model, call)
        if forward.describe != info["call"]:
            raise ValueError(f"{path}: the search timed the model as {info['call']}, not {forward.describe}; pass the "
                             "call= it was started with")
        rest = RestOfModel.from_dict(info["rest"])
        fingerprint = model_fingerprint(forward, space, info["input_shape"])
        check_same_model(path, info["model"], fingerprint, rest.ms)
        session = cls(model, info["hw"] if hw is None else hw, proxy=proxy, input_shape=info["input_shape"],
                      space=space, executor=executor, checkpoint=path, progress=progress,
                      proxy_images=info.get("proxy_images", 8) if proxy_images is None else proxy_images,
                      proxy_resolution=proxy_resolution or info.get("proxy_resolution"),
                      runtime=info.get("runtime", "eager"), call=call, rest_ms=rest.ms,
                      settings=SearchSettings.from_shape(s, **run),
                      strategy=make_strategy(s["strategy"], **s["strategy_options"]) if strategy is None else strategy)
        session.rest, session.fingerprint = rest, fingerprint
        session.target = session.target.at_level(info.get("level", 1.0))  # as re-levelled when the search began
        session._check_resumable(state, info, path)
        session._resume_from, session._elapsed_before = state, float(info["elapsed_s"])
        return session

    def _check_resumable(self, state: SearchState, info: dict[str, Any], path: str | os.PathLike) -> None:
        """Refuse a predictor or proxy other than the checkpointed search's: the rest of the
        search would be judged differently from its start."""
        dense_ms = float(self._latency([self.space.dense()])[0])
        if not math.isclose(dense_ms, state.dense_ms, rel_tol=1e-9):
            raise ValueError(f"{path}: the search was run with a predictor that gives the dense model "
                             f"{state.dense_ms:.6g} ms, this one ({self.predictor.hw}) gives {dense_ms:.6g} ms; "
                             "pass hw=<the predictor the search started with>")
        if proxy_name(self.proxy) != info["proxy_name"]:
            raise ValueError(f"{path}: the search scored configs with proxy {info['proxy_name']!r}, not "
                             f"{proxy_name(self.proxy)!r}; pass proxy=<the proxy the search started with>")

    def _resume_hint(self) -> str:
        """What to do after the executor was lost mid-search."""
        if self.checkpoint is None:
            return "the search was not checkpointed: run it again, with checkpoint= (--checkpoint) to be resumable"
        return (f"resume with SearchSession.resume({str(self.checkpoint)!r}, model) or sparsevit-search --resume "
                f"{self.checkpoint} on a new cluster")

    def run(self) -> SearchResult:
        """Search (from the checkpoint, for a resumed session), then package the best config,
        the Pareto front and the history.

        Returns:
            The :class:`SearchResult`: ``best``, ``predicted_ms`` (whole model, ms), ``score``,
            ``pareto``, ``history`` and ``stopped`` (the limit that ended it, if any).

        Raises:
            ExecutorLost: the Ray cluster was lost; the message says how to resume.
            ValueError: no config is predicted under the budget (the message names one that is).
            RuntimeError: the proxy failed on the reference configs after its retries.
        """
        if self._resume_from is None and "engine" not in vars(self):  # a resumed search keeps its checkpoint's scale
            self.target = self.target.rechecked(self.backbone, self.input_shape)  # the machine as it runs now
        engine = self.engine  # calibrates, times the rest and builds the proxy where they waited for run()
        self._started = time.perf_counter()
        try:
            with owning(self.checkpoint) if self.checkpoint is not None else contextlib.nullcontext():
                out = engine.run(self._resume_from)
        except ExecutorLost as err:
            raise ExecutorLost(f"{err}; {self._resume_hint()}") from err
        finally:
            # an executor made here from a name is closed after each run (its pool restarts on the next)
            close = getattr(engine.executor, "close", None) if isinstance(self._executor, str) else None
            if close is not None:
                close()
        elapsed = self._elapsed()
        # a result's latencies are the whole model's, whatever the budget was of
        whole = (lambda ms: ms) if self.settings.budget_of == "model" else self.rest.end_to_end
        history = out.history.assign(predicted_ms=whole(out.history["predicted_ms"].to_numpy(float)))
        learned = self.predictor.learned_
        info = {"statistic": learned.statistic, "threads": list(learned.threads), "runtime": learned.runtime,
                "fingerprint": learned.fingerprint, "expected_error": self.target.expected_error,
                "calibration": learned.calibration}
        best, best_ms, score, measured = out.best, float(whole(out.best_ms)), out.best_score, None
        if self.measure_finalists:  # the winner measured before it is chosen (see .finalists)
            measured = measure_finalists(
                self.forward, history, self.space.dense(), budget_ms=float(whole(out.budget_ms)),
                dense_predicted_ms=float(whole(out.dense_ms)), relative=self.settings.budget_ms is None,
                band=band_of(self.target.expected_error), input_shape=self.input_shape, predictor_info=info,
                runtime=learned.runtime)
            pick = measured.chosen()
            best, best_ms, score = SparsityConfig(pick.ratios, best.signature, best.granularity), pick.predicted_ms, \
                pick.score
        result = SearchResult(
            best=best, predicted_ms=best_ms, dense_predicted_ms=float(whole(out.dense_ms)), measured=measured,
            score=score, dense_score=out.dense_score, budget_ms=float(whole(out.budget_ms)),
            rest=self.rest, call=self.forward.describe, hw=self.predictor.hw,
            estimated=self.predictor.estimated, proxy_name=proxy_name(self.proxy), input_shape=self.input_shape,
            strategy=self.strategy.name, seed=self.settings.seed, search_time_s=elapsed, history=history,
            progress=out.progress, settings={**self.settings.to_dict(), **self.engine.shape()},
            stopped=out.stopped, retried=out.retried, proxy_warning=out.proxy_warning,
            predictor_info=info, model=self.model,
        )
        logger.info("%s", result.summary())
        return result
