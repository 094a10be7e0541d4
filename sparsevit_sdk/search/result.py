"""SearchResult: what a search found, how it got there, and whether the speed-up is real.

``validate`` runs the real sparse kernels on this machine (:mod:`.validation`); ``plot``
draws the Pareto front and the progress of the search (:mod:`.plots`); ``save``/``load``
write one JSON file (never a pickle).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch.nn as nn

from .._atomic import write_json
from .._documents import DocumentKind, read_json, renamed
from ..accuracy.adapt import LossFn, TrainLog, finetune
from ..accuracy.distill import Distillation
from ..config import SparsityConfig
from ..profiler.forward import Call, RestOfModel
from ..sparse.convert import set_window_score, sparse_backbone
from ..sparse.windows import WINDOW_SCORES, WindowScore
from .finalists import Measured
from .outcome import HISTORY_COLUMNS, PROGRESS_COLUMNS, pareto_front
from .validation import ValidationReport, validate_result

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)
_HISTORY_DTYPES = {"generation": "int64", "predicted_ms": "float64", "score": "float64", "feasible": "bool"}


def _from_schema_2(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 (its files name the target ``hardware`` up to sparsevit-sdk commit 7747551, ``hw`` after)
    → 3: the target is ``hw``; the fields schema 2 added on the way (``stopped``, ``rest``, ``call``,
    ``retried``) and the window score, which was always SparseViT's ``norm`` then, are present."""
    data = renamed("hardware", "hw")(data)
    defaults = {"stopped": None, "rest": RestOfModel().to_dict(), "call": "model(x)", "retried": 0,
                "window_score": "norm"}
    return {**defaults, **{k: v for k, v in data.items() if not (k == "rest" and v is None)}}


RESULT = DocumentKind("sparsevit-search-result", 5, what="search result", fix="re-run the search",
                      migrations={2: _from_schema_2, 3: lambda data: {**data, "measured": None},
                                  4: lambda data: {**data, "proxy_warning": None}})
# 2: ``strategy`` replaced ``mode``; 3: ``hw``, window_score; 4: ``measured`` (finalists timed before choosing);
# 5: ``proxy_warning`` (a proxy that cannot rank, named)


@dataclass(eq=False)  # DataFrames have no truth value; compare results with to_dict()
class SearchResult:
    """The best config under the budget, its predicted latency and proxy score, the Pareto
    front of everything scored, and the full history (one row per distinct config).

    Every latency (``predicted_ms``, ``dense_predicted_ms``, ``budget_ms``, the history's) is
    the whole model's as it is called (``call``): the backbone's prediction plus ``rest``;
    the ``backbone_*`` properties give the backbone's alone.
    """

    best: SparsityConfig
    predicted_ms: float
    dense_predicted_ms: float
    score: float
    dense_score: float
    budget_ms: float
    hw: str
    estimated: bool  # True: no measured predictor for ``hw``; latencies come from specs
    proxy_name: str
    input_shape: tuple[int, ...]
    strategy: str  # the search strategy's name: "ga", "nsga2", "random", or your own's
    seed: int | None
    search_time_s: float
    history: pd.DataFrame = field(repr=False)
    progress: pd.DataFrame = field(repr=False)  # per generation: evaluations, best score so far
    settings: dict[str, Any] = field(default_factory=dict, repr=False)  # budget, seed, limits, strategy_options, ...
    # what validation needs to know about the predictor: statistic, threads, fingerprint
    predictor_info: dict[str, Any] = field(default_factory=dict, repr=False)
    model: nn.Module | None = field(default=None, repr=False)
    stopped: str | None = None  # why and when a limit (time, evaluations, patience) ended the search early
    rest: RestOfModel = field(default_factory=RestOfModel)  # the model beyond its backbone, and how it was found
    call: str = "model(x)"  # how the model was run
    retried: int = 0  # proxy calls made again in this run (a proxy error, a lost worker or node)
    # how the model ranked its windows (set_window_score): the configs mean what they scored only under it.
    # None: read from ``model`` ("norm", SparseViT's, without one)
    window_score: WindowScore | None = None
    # the finalists timed on this machine before the best was chosen (None: the target was not this machine)
    measured: Measured | None = None
    # why the proxy cannot rank configs, where its dense and uniform scores showed it (search/ranking.py)
    proxy_warning: str | None = None

    def __post_init__(self) -> None:
        if self.window_score is None:
            self.window_score = "norm" if self.model is None else _window_score(self.model)

    @property
    def backbone_predicted_ms(self) -> float:
        return float(self.rest.backbone(self.predicted_ms))

    @property
    def backbone_dense_predicted_ms(self) -> float:
        return float(self.rest.backbone(self.dense_predicted_ms))

    @property
    def backbone_predicted_speedup(self) -> float:
        return self.backbone_dense_predicted_ms / self.backbone_predicted_ms

    @property
    def expected_error(self) -> dict[str, Any] | None:
        """The predictor's error on whole models held out of its fit (``within_10`` %, ``mape`` %, ``models``,
        ``how``, ``poor``; :attr:`LatencyPredictor.expected_error`), or None for an estimate: the confidence
        every predicted latency of this result carries."""
        return self.predictor_info.get("expected_error")

    @property
    def pareto(self) -> pd.DataFrame:
        """Non-dominated scored configs (higher score, lower predicted ms), fastest first."""
        return pareto_front(self.history)

    @property
    def predicted_speedup(self) -> float:
        return self.dense_predicted_ms / self.predicted_ms

    @property
    def evaluations(self) -> int:
        """Proxy evaluations the search made (each distinct config at most once)."""
        return int(self.history["score"].notna().sum())

    def summary(self) -> str:
        """The result in a few lines, for a person: the best config and what the search cost, the target and
        input, the predicted latency with its expected error against the dense model's and the budget, where the
        predictor came from (and whether it is poor here), the rest of the model, the score, and why the search
        stopped early, if it did, and a warning where the proxy cannot rank configs.

        Returns:
            The text, one line per fact (``print(result.summary())``).
        """
        source = "ESTIMATED from published specs (no measured predictor)" if self.estimated else "measured predictor"
        whole = self.rest.source != "none"
        scope = self.settings.get("budget_of", "model")
        budget = (f"budget {self.budget_ms:.4g} ms" if not whole or scope == "model" else
                  f"budget {self.rest.backbone(self.budget_ms):.4g} ms for the backbone")
        rest = self.rest.ms
        failed = int(self.history["error"].notna().sum())
        error = self.expected_error
        band = f" ± {error['mape']:.1f} %" if error else ""
        calibrated = self.predictor_info.get("calibration") or {}
        return "\n".join([
            f"best config {self.best} ({self.strategy} search, seed {self.seed}, {self.search_time_s:.1f} s, "
            f"{self.evaluations} proxy evaluations of {len(self.history)} configs)",
            f"  {self.hw} ({source}), input {'x'.join(map(str, self.input_shape))}"
            + (f", {self.call} end to end:" if whole else ":"),
            f"  predicted {self.predicted_ms:.4g} ms{band} vs dense {self.dense_predicted_ms:.4g} ms "
            f"({self.predicted_speedup:.2f}x; {budget})",
            *([f"  calibrated here {calibrated['created']} (cache entry {calibrated['entry']}, from the "
               f"{calibrated['base']} predictor)"
               + (f", re-levelled x{calibrated['level']:.2f} to the dense model timed before the search"
                  if "level" in calibrated else "")] if "entry" in calibrated else []),
            *([f"  the predictor is poor here: {error['within_10']:.0f} % of {error['models']} whole models within "
               f"±10 % ({error['how']}); validate() measures what it predicts"] if error and error["poor"] else []),
            *self._measured_lines(),
            *([f"  backbone {self.backbone_predicted_ms:.4g} ms vs dense {self.backbone_dense_predicted_ms:.4g} ms "
               f"({self.backbone_predicted_speedup:.2f}x) + the rest {rest:.4g} ms "
               f"({rest / self.dense_predicted_ms:.0%} of dense; {self.rest.note})"] if whole else []),
            f"  {self.proxy_name}: {self.score:.4f} (dense {self.dense_score:.4f})",
            *([f"  WARNING: {self.proxy_warning}"] if self.proxy_warning else []),
            *([f"  {self.stopped}"] if self.stopped else []),
            *([f"  {self.retried} proxy call(s) retried (a proxy error, or a lost worker or node); {failed} config(s) "
               "given up on (history['error'])"] if self.retried or failed else []),
        ])

    def _measured_lines(self) -> list[str]:
        """What the finalists measured, for the summary (nothing where none were timed)."""
        m = self.measured
        if m is None:
            return []
        best = next(f for f in m.finalists if f.ratios == self.best.ratios)
        within = sum(f.measured_ms <= m.budget_ms for f in m.finalists)
        return [f"  measured here before choosing: {best.measured_ms:.4g} ms vs dense {m.dense_ms:.4g} ms "
                f"({m.dense_ms / best.measured_ms:.2f}x; budget {m.budget_ms:.4g} ms measured); best-scored of "
                f"{len(m.finalists)} finalists, {within} measured within the budget"
                + ("" if within else ": none was, so the fastest measured is chosen")]

    # ------------------------------------------------------------- training
    def finetune(self, loader: Iterable, loss_fn: LossFn | None, steps: int, *, model: nn.Module | None = None,
                 distill: Distillation | bool | float | None = True, **settings: Any) -> TrainLog:
        """SparseViT's last step: train the searched model at :attr:`best` only, distilled from its dense forward.

        A supernet shares its weights among all configs; once one is chosen they can serve it
        alone.  ``loader``, ``loss_fn``, ``steps`` and ``settings`` (``lr``, ``seed``, ...) are
        :func:`~sparsevit_sdk.accuracy.finetune`'s; ``model`` is the searched model when this
        result has none attached.  Scores in this result were measured before: re-score after.
        """
        model = self._ranking(model if model is not None else self.model)
        if model is None:
            raise ValueError("this result has no model attached (loaded from a file?); pass model=, the searched model")
        return finetune(model, loader, loss_fn, steps, config=self.best, distill=distill, **settings)

    # ------------------------------------------------- validation and plots
    def validate(self, device: str = "cpu", *, model: nn.Module | None = None, repeats: int = 20,
                 warmup: int = 5, rounds: int = 3, threads: int | None = None,
                 clock: str | None = None, runtime: str | None = None, call: Call = None) -> ValidationReport:
        """Time the dense and the best config on ``device`` with the real sparse kernels, in ``runtime``
        (default: the one the latencies were predicted for; ``model``: the searched model, if this
        result has none attached), the whole model run as the search ran it (``call``) beside its
        backbone; see :func:`~sparsevit_sdk.search.validation.validate_result`.

        Args:
            device: ``"cpu"`` or ``"cuda:N"``: where the real kernels are timed.
            model: the searched model, where this result has none attached (one loaded from a file).
            repeats: timed calls per round.
            warmup: untimed calls first.
            rounds: rounds of dense and sparse calls, interleaved; the fastest round is reported.
            threads: CPU threads (default: the predictor's).
            clock: ``"wall"`` or ``"cpu"`` (default: the predictor's).
            runtime: ``"eager"``, ``"compiled"`` or ``"onnxruntime"`` (default: the predictor's).
            call: how the model is run (default: as the search ran it).

        Returns:
            A :class:`~sparsevit_sdk.search.validation.ValidationReport`: measured and predicted
            dense and sparse latencies in ms, their ratios, and whether the measurement lies inside
            the predictor's expected error; ``print`` it for the table.

        Raises:
            ValueError: no model attached and none given, ``rounds`` < 1, or a ``call`` other than the
                search's.
        """
        return validate_result(self, device, model=self._ranking(model), repeats=repeats, warmup=warmup,
                               rounds=rounds, threads=threads, clock=clock, runtime=runtime, call=call)

    def _ranking(self, model: nn.Module | None) -> nn.Module | None:
        """``model`` (None: the attached one, if any) ranking its windows as the search's did."""
        model = model if model is not None else self.model
        if model is not None and _window_score(model) != self.window_score:
            logger.info("the model ranked windows by %r; set to %r, as it was searched", _window_score(model),
                        self.window_score)
            set_window_score(model, self.window_score)
        return model

    def plot(self, path: str | os.PathLike | None = None) -> Figure:
        """Pareto front of (predicted latency, proxy score) beside the best score per generation;
        see :func:`~sparsevit_sdk.search.plots.plot_result`."""
        from .plots import plot_result  # matplotlib loads when a plot is drawn, not with the search

        return plot_result(self, path)

    # ----------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        history = self.history.assign(ratios=self.history["ratios"].map(list))
        return {
            **RESULT.header(),
            "best": self.best.to_dict(), "predicted_ms": self.predicted_ms,
            "dense_predicted_ms": self.dense_predicted_ms, "score": self.score, "dense_score": self.dense_score,
            "budget_ms": self.budget_ms, "hw": self.hw, "estimated": self.estimated,
            "proxy_name": self.proxy_name, "input_shape": list(self.input_shape), "strategy": self.strategy,
            "seed": self.seed, "search_time_s": self.search_time_s, "settings": self.settings,
            "predictor_info": self.predictor_info, "stopped": self.stopped, "rest": self.rest.to_dict(),
            "call": self.call, "retried": self.retried, "window_score": self.window_score,
            "measured": None if self.measured is None else self.measured.to_dict(),
            "proxy_warning": self.proxy_warning,
            "history": _records(history), "progress": _records(self.progress),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, model: nn.Module | None = None,
                  source: str = "search result") -> SearchResult:
        data = RESULT.upgrade(data, source)
        try:
            history = pd.DataFrame(data["history"], columns=list(HISTORY_COLUMNS)).astype(_HISTORY_DTYPES)
            history["ratios"] = history["ratios"].map(tuple)
            result = cls(
                best=SparsityConfig.from_dict(data["best"]), history=history,
                progress=pd.DataFrame(data["progress"], columns=list(PROGRESS_COLUMNS)).astype(float).astype(
                    {c: "int64" for c in ("generation", "new_configs", "evaluations")}),
                input_shape=tuple(data["input_shape"]), model=model, rest=RestOfModel.from_dict(data["rest"]),
                call=str(data["call"]), retried=int(data["retried"]),
                measured=None if data["measured"] is None else Measured.from_dict(data["measured"]),
                **{k: data[k] for k in ("predicted_ms", "dense_predicted_ms", "score", "dense_score", "budget_ms",
                                        "hw", "estimated", "proxy_name", "strategy", "seed", "search_time_s",
                                        "settings", "predictor_info", "stopped", "window_score",
                                        "proxy_warning")},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: corrupt search result ({type(err).__name__}: {err})") from err
        result._check_consistent(source)
        if model is not None:
            result.best.check_model(sparse_backbone(model).signature)
            result._ranking(model)
        return result

    def _check_consistent(self, source: str) -> None:
        """A result read from a file must agree with itself: latencies a device can take, an
        image shape, and a best config the history scored with the latency recorded for it."""
        def bad(field: str, value: Any, expected: str) -> ValueError:
            return ValueError(f"{source}: corrupt search result: {field} is {value!r}, expected {expected}; re-run "
                              "the search (or restore the file)")
        # whole-model latencies: a backbone's prediction (under an hour, as every prediction) plus the rest of
        # the model, which is the user's (given or measured) and may take longer
        for name in ("predicted_ms", "dense_predicted_ms", "budget_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise bad(name, value, "a latency in ms, positive and finite")
        if self.window_score not in WINDOW_SCORES:
            raise bad("window_score", self.window_score, f"one of {list(WINDOW_SCORES)}")
        for name in ("score", "dense_score"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise bad(name, value, "a finite number")
        if len(self.input_shape) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                                 for d in self.input_shape):
            raise bad("input_shape", list(self.input_shape), "four positive integers (B, C, H, W)")
        row = self.history[self.history["ratios"] == self.best.ratios]
        if row.empty or not math.isclose(float(row["predicted_ms"].iloc[0]), self.predicted_ms, rel_tol=1e-9):
            raise bad("best", str(self.best), f"a config of the history predicted at {self.predicted_ms:.6g} ms")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as one JSON file, atomically: a failed write keeps the previous file.

        Args:
            path: the JSON file to write (its folder must exist).

        Returns:
            The path written.
        """
        return write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike, *, model: nn.Module | None = None) -> SearchResult:
        """Read a saved result; with ``model``, it can be validated (and must match it).

        Args:
            path: a JSON file :meth:`save` (or ``sparsevit-search --out``) wrote.
            model: the searched model, to validate or fine-tune the result with.

        Returns:
            The :class:`SearchResult`, as it was saved (older schemas migrated).

        Raises:
            DocumentError: the file is not a search result, is of an unknown schema, or disagrees with
                itself (its best config not in its history); the message names the field and the fix.
            ValueError: ``model`` is not the model the result was searched for.
        """
        data = read_json(path, what="search result", fix="give the JSON file a search saved (result.save, "
                                                             "sparsevit-search --out)")
        return cls.from_dict(data, model=model, source=str(path))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain JSON values; NaN (an unscored config) becomes null."""
    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _window_score(model: nn.Module) -> WindowScore:
    """How the sparse Swin in ``model`` ranks its windows (one measure for all its stages)."""
    scores = {stage.window_score for stage in sparse_backbone(model).stages}
    if len(scores) > 1:
        raise ValueError(f"the model's stages rank windows by {sorted(scores)}: a result records one window score; "
                         "set one for all with set_window_score(model, ...)")
    return scores.pop()
