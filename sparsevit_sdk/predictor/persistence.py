"""Predictor files: one JSON document of metadata plus every booster in xgboost's own JSON
format, checked field by field on load.  Nothing is ever pickled."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from .._documents import DocumentError, DocumentKind, Field, read_json, renamed
from .._version import __version__
from ..arch import BLOCK_KINDS, DTYPE_BYTES
from ..dataset.schema import HOUR_MS
from ..runtimes import RUNTIMES
from .boosters import check_booster
from .features import FEATURES, UNIT_KINDS
from .gpu_model import FIGURE_RUNTIMES, GpuConstants
from .rows import STATISTICS
from .state import Learned

REFIT = "re-create it with `sparsevit-fit --profiles profiles/<hw> --out <file>`"

# 2: unit_curves; 3: the v2 feature, the block kinds fitted, a scale per kind; 4: the target is "hw" (was "hardware")
PREDICTOR = DocumentKind("sparsevit-latency-predictor", 4, what="latency predictor", fix=REFIT,
                         migrations={3: renamed("hardware", "hw")})


def to_dict(params: dict[str, Any], learned: Learned) -> dict[str, Any]:
    """A predictor with ``params`` and ``learned`` as one JSON-able document (see
    :meth:`LatencyPredictor.to_dict`)."""
    p = learned
    meta = {
        **PREDICTOR.header(), "hw": p.hw,
        "estimated": p.estimated, "estimate": p.estimate, "statistic": p.statistic,
        "dtype": p.dtype, "threads": p.threads, "runtime": p.runtime, "fingerprint": p.fingerprint,
        "features": list(FEATURES), "params": params, "scale": p.scale,
        "overhead_ms": p.overhead_ms, "ms_per_gflop": p.ms_per_gflop, "unit_scale": p.unit_scale,
        "unit_curves": p.unit_curves,
        "calibration": p.calibration, "metrics": p.metrics, "fit_keys": p.fit_keys, "blocks": p.blocks,
        "rest": p.rest,
        "versions": {"sparsevit_sdk": __version__, "xgboost": xgb.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "python": platform.python_version()},
    }
    units = {kind: {"linear": [float(c) for c in p.linear[kind]],
                    "booster": json.loads(p.boosters[kind].save_raw("json"))} for kind in p.boosters}
    return {**_finite(meta), "units": units}


def from_dict(data: dict[str, Any], source: str) -> tuple[dict[str, Any], Learned]:
    """The parameters and learned state of a predictor document, checked field by field (see
    :meth:`LatencyPredictor.from_dict`)."""
    data = PREDICTOR.upgrade(data, source)
    if data.get("features") != list(FEATURES):
        raise DocumentError(f"{source}: the predictor was fitted on features {data.get('features')}, this "
                            f"sparsevit-sdk computes {list(FEATURES)}; {REFIT}")
    doc = Field(data, source=source, what="predictor file", fix=REFIT)
    params = doc["params"]
    checked = {"statistic": params["statistic"].text(("auto", *STATISTICS)),
               "n_estimators": params["n_estimators"].number(integer=True, minimum=1),
               "max_depth": params["max_depth"].number(integer=True, minimum=0),
               "learning_rate": params["learning_rate"].number(above=0),
               "overhead_fraction": params["overhead_fraction"].number(minimum=0, maximum=1),
               "random_state": params["random_state"].number(integer=True)}
    estimate = None if doc["estimate"].value is None else _read_estimate(doc["estimate"])
    linear, boosters = {}, {}
    for kind in () if estimate is not None else UNIT_KINDS:  # an estimate prices units without boosters
        linear[kind], boosters[kind] = _read_unit(doc["units"][kind])
    return checked, Learned(
        linear=linear, boosters=boosters,
        hw=doc["hw"].text(), estimated=doc["estimated"].flag(), estimate=estimate,
        statistic=doc["statistic"].text(STATISTICS), dtype=doc["dtype"].text(tuple(DTYPE_BYTES)),
        threads=[t.number(integer=True, minimum=1) for t in doc["threads"].elements(nonempty=True)],
        runtime=doc["runtime"].text(RUNTIMES),
        fingerprint=doc["fingerprint"].mapping(),
        scale={_block_kind(kind, doc["scale"]): s.number(above=0) for kind, s in doc["scale"].items()},
        overhead_ms=doc["overhead_ms"].number(minimum=0, maximum=HOUR_MS),
        ms_per_gflop=float(doc["ms_per_gflop"].number(above=0, nullable=True) or "nan"),  # null: no model rows
        unit_scale={group: _read_curve(scale, minimum=0) for group, scale in doc["unit_scale"].items()},
        unit_curves={key: _read_curve(curve) for key, curve in doc["unit_curves"].items()},
        calibration=doc["calibration"].mapping(), metrics=doc["metrics"].mapping(),
        fit_keys=[key.text() for key in doc["fit_keys"].elements()],
        blocks=sorted({b.text(BLOCK_KINDS) for b in doc["blocks"].elements(nonempty=True)}),
        rest=_read_rest(doc["rest"]) if "rest" in data else {},  # predictors fitted on no whole model have none
    )


def load(name_or_path: str | os.PathLike, shipped: dict[str, Path]) -> tuple[dict[str, Any], Learned]:
    """The parameters and learned state in a predictor file, or in the shipped one of that name
    (``shipped``: the shipped predictor files by name)."""
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
    return from_dict(data, str(path))


def _read_unit(unit: Field) -> tuple[np.ndarray, xgb.Booster]:
    """One unit kind's analytic base ``c0 + c1·FLOPs + c2·bytes`` (each >= 0) and booster."""
    linear = unit["linear"]
    coef = np.array([c.number(minimum=0) for c in linear.elements(length=3)])
    if not coef.any():
        raise linear.error("is all zeros: the analytic base would be 0 ms")
    check_booster(unit["booster"], len(FEATURES))  # before xgboost, which trusts its own files
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(json.dumps(unit["booster"].mapping()).encode()))
    except xgb.core.XGBoostError as err:
        raise unit["booster"].error(f"is not a model xgboost {xgb.__version__} can load") from err
    return coef, booster


def _read_rest(rest: Field) -> dict[str, dict[str, float]]:
    """The rests of whole models a profile timed (see :mod:`.rest`): times finite and >= 0 (a whole model
    may take longer than the hour a backbone's prediction stays under: the profile holds what was timed)."""
    table = {}
    for key, entry in rest.items():
        table[key] = {name: entry[name].number(minimum=0)
                      for name in ("ms", "whole_ms", "backbone_ms")}
        table[key]["calls"] = entry["calls"].number(integer=True, minimum=1, maximum=1000)
    return table


def _block_kind(kind: str, parent: Field) -> str:
    """A block kind used as a key of ``parent`` (an object keyed by kind), checked."""
    if kind not in BLOCK_KINDS:
        raise parent.error(f"has the key {kind!r}, expected block kinds {BLOCK_KINDS}")
    return kind


def _read_curve(curve: Field, minimum: float | None = None) -> list[list[float]]:
    """A calibration curve: ``[x, value]`` points with increasing x (sparsity → scale for
    group scales, kept windows → log-ratio for residual curves)."""
    points = [[x.number(), value.number(minimum=minimum)]
              for x, value in (point.elements(length=2) for point in curve.elements(nonempty=True))]
    if any(b[0] <= a[0] for a, b in zip(points, points[1:])):
        raise curve.error("has kept-window points out of order: x must increase")
    return points


def _read_estimate(estimate: Field) -> dict[str, Any]:
    """The ``estimate`` of a GPU target nobody measured: what :func:`.unit_model.unit_ms` prices with."""
    estimate["kind"].text(("gpu-cost-model",))
    estimate["runtime"].text(tuple(FIGURE_RUNTIMES))
    for name in fields(GpuConstants):
        estimate["constants"][name.name].number(above=0)
    spec = estimate["target_spec"]
    for name in ("peak_fp32_tflops", "peak_fp16_tflops", "mem_bw_gbs"):
        spec[name].number(above=0)
    for name in ("name", "description", "kind", "default_dtype"):
        spec[name].text()
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
