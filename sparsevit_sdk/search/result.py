"""SearchResult: what a search found, how it got there, and whether the speed-up is real.

``validate`` runs the real sparse kernels on this machine; ``plot`` draws the Pareto front
and the progress of the search; ``save``/``load`` write one JSON file (never a pickle).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._atomic import write_figure, write_json
from .._documents import check_header, header
from ..accuracy.state import preserved
from ..config import SparsityConfig
from ..devices import resolve_device
from ..profiler.fingerprint import describe_mismatch, device_fingerprint
from ..profiler.timing import measure_latency
from ..sparse.convert import sparse_backbone
from .engine import HISTORY_COLUMNS, PROGRESS_COLUMNS, pareto_front

FORMAT = "sparsevit-search-result"
SCHEMA_VERSION = 1
_HISTORY_DTYPES = {"generation": "int64", "predicted_ms": "float64", "score": "float64", "feasible": "bool"}


@dataclass(frozen=True)
class ValidationReport:
    """Measured dense vs sparse latency of the best config, next to what was predicted.

    ``dense_ms``/``sparse_ms`` are the lowest ``statistic`` over ``rounds`` (rounds alternate
    dense and sparse, so drift hits both alike; load on a shared machine only ever slows a
    round down, so the fastest round is the one to trust).  ``comparable`` is
    False when the predictions were not made for this device (another target, an estimate,
    or another CPU): the measured speed-up still shows the kernels work, but measured vs
    predicted ms then says nothing about the predictor.
    """

    device: str
    hardware: str
    statistic: str
    threads: int
    clock: str
    dense_ms: float
    sparse_ms: float
    predicted_dense_ms: float
    predicted_ms: float
    dense_rounds_ms: tuple[float, ...]
    sparse_rounds_ms: tuple[float, ...]
    comparable: bool
    note: str

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.sparse_ms

    @property
    def predicted_speedup(self) -> float:
        return self.predicted_dense_ms / self.predicted_ms

    @property
    def ratio(self) -> float:
        """Measured / predicted latency of the sparse model (1.0 is a perfect prediction)."""
        return self.sparse_ms / self.predicted_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": self.speedup, "predicted_speedup": self.predicted_speedup,
                "ratio": self.ratio}

    def __str__(self) -> str:
        lines = [
            f"validation on {self.device} ({self.threads} threads, {self.clock} clock, {self.statistic}):",
            f"  measured  dense {self.dense_ms:.3f} ms, sparse {self.sparse_ms:.3f} ms -> {self.speedup:.2f}x",
            f"  predicted dense {self.predicted_dense_ms:.3f} ms, sparse {self.predicted_ms:.3f} ms -> "
            f"{self.predicted_speedup:.2f}x on {self.hardware}",
        ]
        if self.comparable:
            lines.append(f"  measured / predicted: sparse {self.ratio:.2f}, dense "
                         f"{self.dense_ms / self.predicted_dense_ms:.2f}")
        lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def _fingerprints(info: dict) -> list[dict]:
    """A predictor's device description(s): one fingerprint, or several keyed by their id."""
    return [info] if "fingerprint_id" in info else [v for v in info.values() if isinstance(v, dict)]


@dataclass(eq=False)  # DataFrames have no truth value; compare results with to_dict()
class SearchResult:
    """The best config under the budget, its predicted latency and proxy score, the Pareto
    front of everything scored, and the full history (one row per distinct config)."""

    best: SparsityConfig
    predicted_ms: float
    dense_predicted_ms: float
    score: float
    dense_score: float
    budget_ms: float
    hardware: str
    estimated: bool  # True: no measured predictor for ``hardware``; latencies come from specs
    proxy_name: str
    input_shape: tuple[int, ...]
    mode: str
    seed: int | None
    search_time_s: float
    history: pd.DataFrame = field(repr=False)
    progress: pd.DataFrame = field(repr=False)  # per generation: evaluations, best score so far
    settings: dict[str, Any] = field(default_factory=dict, repr=False)  # population, parents, ...
    # what validation needs to know about the predictor: statistic, threads, fingerprint
    predictor_info: dict[str, Any] = field(default_factory=dict, repr=False)
    model: nn.Module | None = field(default=None, repr=False)
    stopped: str | None = None  # why and when a limit (time, evaluations, patience) ended the search early

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
        source = "ESTIMATED from published specs (no measured predictor)" if self.estimated else "measured predictor"
        return "\n".join([
            f"best config {self.best} ({self.mode} search, seed {self.seed}, {self.search_time_s:.1f} s, "
            f"{self.evaluations} proxy evaluations of {len(self.history)} configs)",
            f"  {self.hardware} ({source}), input {'x'.join(map(str, self.input_shape))}:",
            f"  predicted {self.predicted_ms:.4g} ms vs dense {self.dense_predicted_ms:.4g} ms "
            f"({self.predicted_speedup:.2f}x; budget {self.budget_ms:.4g} ms)",
            f"  {self.proxy_name}: {self.score:.4f} (dense {self.dense_score:.4f})",
            *([f"  {self.stopped}"] if self.stopped else []),
        ])

    # ------------------------------------------------------------ validation
    def validate(self, device: str = "cpu", *, model: nn.Module | None = None, repeats: int = 20,
                 warmup: int = 5, rounds: int = 3, threads: int | None = None,
                 clock: str | None = None) -> ValidationReport:
        """Time the dense and the best config on ``device`` with the real sparse kernels.

        On a CPU, ``threads`` and ``clock`` (``"wall"`` or ``"cpu"``, see ``time_callable``)
        default to how the predictor's data was measured, when known, so measured and
        predicted ms are like for like.  The model's sparsity, mode, device and dtype are
        restored afterwards.
        """
        model = model if model is not None else self.model
        if model is None:
            raise ValueError("this result has no model attached (it was loaded from a file); pass the model it was "
                             "searched for: result.validate(device, model=model)")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        backbone = sparse_backbone(model)
        self.best.check_model(backbone.signature)
        dev = resolve_device(device)
        fingerprints = _fingerprints(self.predictor_info.get("fingerprint") or {})
        fitted_threads = self.predictor_info.get("threads") or []
        if threads is None and dev.type == "cpu" and len(fitted_threads) == 1:
            threads = int(fitted_threads[0])
        threads = threads or torch.get_num_threads()
        fitted_clocks = {fp.get("clock") for fp in fingerprints}
        if clock is None:
            clock = "cpu" if dev.type == "cpu" and threads == 1 and fitted_clocks == {"cpu"} else "wall"
        statistic = "p10_ms" if dev.type == "cpu" else "median_ms"  # the stable statistic (DESIGN.md)
        dense_cfg = SparsityConfig((0.0,) * len(self.best.ratios), self.best.signature, self.best.granularity)

        param = next(backbone.parameters())
        home = (param.device, param.dtype)
        rows: dict[SparsityConfig, list[float]] = {dense_cfg: [], self.best: []}
        try:
            with preserved(backbone, training=False):
                for _ in range(rounds):
                    for cfg, values in rows.items():
                        backbone.set_sparsity(cfg)
                        stats = measure_latency(backbone, self.input_shape, dev, warmup=warmup, repeats=repeats,
                                                threads=threads, clock=clock)
                        values.append(getattr(stats, statistic))
        finally:
            backbone.to(device=home[0], dtype=home[1])
        comparable, note = self._comparability(fingerprints, device_fingerprint(dev, threads=threads, clock=clock))
        return ValidationReport(
            device=str(dev), hardware=self.hardware, statistic=statistic, threads=threads, clock=clock,
            dense_ms=min(rows[dense_cfg]), sparse_ms=min(rows[self.best]),
            predicted_dense_ms=self.dense_predicted_ms, predicted_ms=self.predicted_ms,
            dense_rounds_ms=tuple(rows[dense_cfg]), sparse_rounds_ms=tuple(rows[self.best]),
            comparable=comparable, note=note,
        )

    def _comparability(self, fingerprints: list[dict], here: dict) -> tuple[bool, str]:
        """Whether the measuring device (``here``) is the one the predictions were made for, and why."""
        if self.estimated:
            return False, (f"{self.hardware} latencies are estimated from published specs, and this run measured "
                           f"{here['device']}: compare the speed-ups, not the milliseconds; profile the target with "
                           "`sparsevit-profile` to get a measured predictor")
        ids = {i for fp in fingerprints for i in np.atleast_1d(fp["fingerprint_id"]).tolist()}
        if here["fingerprint_id"] in ids:
            return True, f"measured on the device the {self.hardware} predictor was fitted on"
        described = [fp for fp in fingerprints if "device_type" in fp]
        why = describe_mismatch(described[0], here) if described else "the predictor records no device description"
        return False, (f"this {here['device']} is not the device the {self.hardware} predictor was fitted on "
                       f"({why}); measured vs predicted ms does not judge the predictor here")

    # ----------------------------------------------------------------- plots
    def plot(self, path: str | os.PathLike | None = None) -> Figure:
        """Pareto front of (predicted latency, proxy score) beside the best score per generation.

        Uses a bare ``Figure`` (Agg), so it works headless and leaves pyplot's state alone.
        """
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        front_ax, progress_ax = fig.subplots(1, 2)
        scored = self.history.dropna(subset=["score"])
        uniform = scored[scored["ratios"].map(lambda r: len(set(r)) == 1)]
        unit = "ms, estimated" if self.estimated else "ms"
        front_ax.scatter(scored["predicted_ms"], scored["score"], s=9, alpha=0.35,
                         c=np.where(scored["feasible"], "tab:blue", "tab:gray"), label="evaluated")
        front_ax.plot(uniform["predicted_ms"], uniform["score"], "x", color="tab:green", label="uniform sparsity")
        front = self.pareto
        front_ax.step(front["predicted_ms"], front["score"], where="post", color="tab:orange", label="Pareto front")
        front_ax.axvline(self.budget_ms, ls="--", color="black", lw=1, label=f"budget {self.budget_ms:.3g} ms")
        front_ax.plot([self.predicted_ms], [self.score], "*", ms=16, color="tab:red", label=f"best {self.best}")
        front_ax.set(xlabel=f"predicted latency on {self.hardware} ({unit})", ylabel=self.proxy_name,
                     title=f"{self.mode} search: {len(scored)} configs scored")
        front_ax.legend(fontsize=8, loc="lower right")
        progress_ax.plot(self.progress["generation"], self.progress["best_score"], marker="o", ms=3)
        progress_ax.set(xlabel="generation", ylabel="best score within budget", title="search progress")
        progress_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if path is not None:
            write_figure(path, fig, dpi=120)
        return fig

    # ----------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        history = self.history.assign(ratios=self.history["ratios"].map(list))
        return {
            **header(FORMAT, SCHEMA_VERSION),
            "best": self.best.to_dict(), "predicted_ms": self.predicted_ms,
            "dense_predicted_ms": self.dense_predicted_ms, "score": self.score, "dense_score": self.dense_score,
            "budget_ms": self.budget_ms, "hardware": self.hardware, "estimated": self.estimated,
            "proxy_name": self.proxy_name, "input_shape": list(self.input_shape), "mode": self.mode,
            "seed": self.seed, "search_time_s": self.search_time_s, "settings": self.settings,
            "predictor_info": self.predictor_info, "stopped": self.stopped,
            "history": _records(history), "progress": _records(self.progress),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, model: nn.Module | None = None,
                  source: str = "search result") -> SearchResult:
        check_header(data, FORMAT, SCHEMA_VERSION, source=source, what="search result", fix="re-run the search")
        try:
            history = pd.DataFrame(data["history"], columns=list(HISTORY_COLUMNS)).astype(_HISTORY_DTYPES)
            history["ratios"] = history["ratios"].map(tuple)
            result = cls(
                best=SparsityConfig.from_dict(data["best"]), history=history,
                progress=pd.DataFrame(data["progress"], columns=list(PROGRESS_COLUMNS)).astype(float).astype(
                    {c: "int64" for c in ("generation", "new_configs", "evaluations")}),
                input_shape=tuple(data["input_shape"]), model=model, stopped=data.get("stopped"),
                **{k: data[k] for k in ("predicted_ms", "dense_predicted_ms", "score", "dense_score", "budget_ms",
                                        "hardware", "estimated", "proxy_name", "mode", "seed", "search_time_s",
                                        "settings", "predictor_info")},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: corrupt search result ({type(err).__name__}: {err})") from err
        if model is not None:
            result.best.check_model(sparse_backbone(model).signature)
        return result

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as one JSON file, atomically: a failed write keeps the previous file."""
        return write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike, *, model: nn.Module | None = None) -> SearchResult:
        """Read a saved result; with ``model``, it can be validated (and must match it)."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a sparsevit search result (not JSON: {err})") from err
        return cls.from_dict(data, model=model, source=str(path))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain JSON values; NaN (an unscored config) becomes null."""
    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
