"""Latency predictors: per-layer xgboost models fitted on profiled units, summed to a model.

``latency`` is the estimator (:class:`LatencyPredictor`); what it learns is one record
(``state``), computed by ``fitting``, ``transfer`` (spec estimates, calibration) and
``persistence`` (JSON files), priced by ``unit_model`` over ``costs`` (cost tables) and
judged by ``judging`` (``lookup_ms`` is its lookup-table baseline: the measured units summed).
``features`` describes units, ``rows`` reads profile rows; ``metrics`` and ``plots`` serve the CLI.
``GpuCostModel`` prices an unprofiled GPU from published figures (``load_published``,
``published_model``).  Profile rows are read, merged and split by device in
:mod:`sparsevit_sdk.dataset`; a predictor of this device is :func:`sparsevit_sdk.local.for_device`.
"""

from .features import config_units, unit_features
from .gpu_model import GpuCostModel, load_published, published_model
from .judging import lookup_ms
from .latency import LatencyPredictor
from .metrics import accuracy, agreement, format_report
from .plots import plot_held_out

__all__ = [
    "GpuCostModel", "LatencyPredictor", "accuracy", "agreement", "config_units", "format_report", "load_published",
    "lookup_ms", "plot_held_out", "published_model", "unit_features",
]
