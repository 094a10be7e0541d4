"""Latency predictors: per-layer xgboost models fitted on profiled units, summed to a model.

``features`` describes units; ``rows`` reads profile rows; ``latency`` is the estimator
(fit, predict) and delegates to ``costs`` (the cost table), ``judging`` (held-out rows,
baselines), ``transfer`` (spec estimates, calibration) and ``persistence`` (JSON files);
``metrics`` and ``plots`` serve the CLI.  Profile rows are read, merged and split by
device in :mod:`sparsevit_sdk.dataset` (``merge_profiles`` and ``select_device`` are
re-exported here).
"""

from ..dataset.merge import merge_profiles, select_device
from .features import Architecture, config_units, unit_costs, unit_features
from .latency import LatencyPredictor
from .metrics import accuracy, agreement, format_report
from .plots import plot_held_out

__all__ = [
    "Architecture", "LatencyPredictor", "accuracy", "agreement", "config_units", "format_report", "merge_profiles",
    "plot_held_out", "select_device", "unit_costs", "unit_features",
]
