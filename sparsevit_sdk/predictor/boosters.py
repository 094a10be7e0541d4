"""An xgboost model from a file, checked down to its trees before xgboost sees it.

xgboost trusts its own JSON: a child index out of range makes a prediction read memory outside
the model (or kill the process), a split on feature 5000 of 18 reads past the feature row, and a
leaf of 1e30 predicts infinity.  So every index a prediction walks is checked to be in range,
every tree to be one tree (each node reached from the root exactly once), and every number to
be finite and of a magnitude a log-latency margin can have.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from .._documents import Field

LEAF_LIMIT = 1e3  # |leaf value| of a booster that adds to a log-latency margin (e^1000 is no latency)
ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_conditions", "base_weights",
          "default_left", "split_type")


def check_booster(booster: Field, num_features: int) -> None:
    """Refuse (a :class:`~sparsevit_sdk._documents.DocumentError` naming the field) a booster
    document that xgboost could load but not safely predict with, for ``num_features`` features."""
    learner = booster["learner"]
    param = learner["learner_model_param"]
    if _integer(param["num_feature"]) != num_features:
        raise param["num_feature"].error(f"is {param['num_feature'].value!r}, expected {num_features}: the predictor's "
                                         "feature count")
    base = param["base_score"]
    if any(abs(v) > LEAF_LIMIT for v in _numbers(base, base.text().strip("[]").split(","))):
        raise base.error(f"is {base.value!r}, expected a margin within ±{LEAF_LIMIT:g}")
    model = learner["gradient_booster"]["model"]
    trees = model["trees"].elements(nonempty=True)
    count = model["gbtree_model_param"]["num_trees"]
    if _integer(count) != len(trees):
        raise count.error(f"is {count.value!r}, but the file holds {len(trees)} trees")
    info = _numbers(model["tree_info"], model["tree_info"].value)
    if len(info) != len(trees) or info.any():
        raise model["tree_info"].error(f"is not {len(trees)} zeros (one output group, one entry per tree)")
    steps = _numbers(model["iteration_indptr"], model["iteration_indptr"].value)
    if len(steps) < 2 or steps[0] != 0 or steps[-1] != len(trees) or (np.diff(steps) < 0).any():
        raise model["iteration_indptr"].error(f"does not run from 0 to the {len(trees)} trees")
    for tree in trees:
        _check_tree(tree, num_features)


def _check_tree(tree: Field, num_features: int) -> None:
    n = _integer(tree["tree_param"]["num_nodes"])
    if n < 1:
        raise tree["tree_param"]["num_nodes"].error("is below 1")
    arrays = {}
    for name in ARRAYS:
        values = _numbers(tree[name], tree[name].value)
        if len(values) != n:
            raise tree[name].error(f"has {len(values)} entries, expected num_nodes = {n}")
        arrays[name] = values
    left, right = arrays["left_children"], arrays["right_children"]
    leaf = left == -1
    for name, values in (("left_children", left), ("right_children", right)):
        bad = ~np.where(leaf, values == -1, (values >= 1) & (values < n) & (values == np.round(values)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise tree[name].error(f"has {values[i]:g} at node {i}: a child index must be -1 on a leaf (both "
                                   f"sides) or a node 1..{n - 1}")
    if int(_reached(left, right)) != n:
        raise tree["left_children"].error("does not make one tree: some node is reached twice or never from the root")
    splits = arrays["split_indices"][~leaf]
    bad = (splits < 0) | (splits >= num_features) | (splits != np.round(splits))
    if bad.any():
        raise tree["split_indices"].error(f"splits on feature {splits[bad][0]:g}; the model has {num_features} "
                                          f"(0..{num_features - 1})")
    if (arrays["split_type"] != 0).any():
        raise tree["split_type"].error("has a categorical split; the predictor's features are all numeric")
    for name in ("split_conditions", "base_weights"):
        values = arrays[name]
        limit = np.where(leaf, LEAF_LIMIT, np.inf) if name == "split_conditions" else LEAF_LIMIT
        bad = ~(np.isfinite(values) & (np.abs(values) <= limit))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise tree[name].error(f"has {values[i]:g} at node {i}, expected a finite value"
                                   + (f" within ±{LEAF_LIMIT:g}" if leaf[i] or name == "base_weights" else ""))


def _reached(left: np.ndarray, right: np.ndarray) -> int:
    """How many nodes a walk from the root reaches, each at most once (a node reached twice stops the count)."""
    seen = np.zeros(len(left), dtype=bool)
    stack = [0]
    while stack:
        node = stack.pop()
        if seen[node]:
            return -1
        seen[node] = True
        if left[node] != -1:
            stack += [int(left[node]), int(right[node])]
    return int(seen.sum())


def _integer(field: Field) -> int:
    """xgboost writes counts as strings ("18"); an integer either way."""
    value = field.value
    if isinstance(value, str | int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return int(value)
    raise field.error(f"is {value!r}, expected an integer")


def _numbers(field: Field, values: Sequence | str) -> np.ndarray:
    """``values`` as floats, or an error naming ``field``."""
    if not isinstance(values, list) or any(isinstance(v, bool) for v in values):
        raise field.error("is not a list of numbers")
    try:
        return np.asarray([float(v) for v in values], dtype=float)
    except (TypeError, ValueError) as err:
        raise field.error(f"holds a value that is not a number ({err})") from err
