"""Layer units of a SparseSwin at a config, their descriptors, and the predictor's features.

A *unit* is what the profiler times in isolation (see ``dataset/schema.py``): patch_embed,
patch_merge (stages 2..), score (a stage where some block prunes), block_pair, norm.  The
same descriptor columns come from a profile row (fitting) and from :func:`config_units`
(prediction), and :func:`unit_features` turns either into the model's inputs, so fitting
and prediction cannot disagree about what a unit is.  The architecture, its geometry and
the units' analytic FLOPs and bytes come from :mod:`sparsevit_sdk.arch` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..arch import DTYPE_BYTES, Architecture, kept_windows, signature_blocks, unit_costs

__all__ = [
    "DESCRIPTORS", "FEATURES", "UNIT_KINDS", "config_units", "fixed_units", "pair_units", "score_units",
    "unit_features",
]

UNIT_KINDS = ("patch_embed", "patch_merge", "score", "block_pair", "norm")

# descriptor columns a unit's features need (a subset of dataset.schema.COLUMNS)
DESCRIPTORS = ("layer", "stage", "signature", "dim", "out_dim", "heads", "window", "mlp_ratio", "in_h", "in_w",
               "batch", "dtype", "windows_total", "windows_kept")

FEATURES = (
    "dim", "out_dim", "heads", "window", "mlp_ratio", "in_h", "in_w", "batch", "dtype_bytes",
    "windows_total", "windows_kept", "kept_frac", "tokens", "rows", "log_flops", "log_bytes", "intensity",
    "v2",
)
KIND_UNITS = ("block_pair", "patch_merge")  # the units whose work differs between Swin V1 and V2


def _unit(arch: Architecture, layer: str, stage: int, input_shape: Sequence[int], dtype: str, **values) -> dict:
    """One descriptor row; fields a unit kind does not have are 0 (its features ignore them)."""
    batch, _, img_h, img_w = input_shape
    row = dict(layer=layer, stage=stage, index=0, signature=arch.signature, dim=arch.dims[stage],
               out_dim=arch.dims[stage], heads=0, window=0, mlp_ratio=0.0, in_h=0, in_w=0, img_h=img_h,
               img_w=img_w, batch=batch, dtype=dtype, windows_total=0, windows_kept=0, sparsity=0.0)
    row.update(values)
    return row


def fixed_units(arch: Architecture, input_shape: Sequence[int], dtype: str) -> pd.DataFrame:
    """Units every config runs: patch_embed, patch merging of stages 2.., final norm."""
    _, _, img_h, img_w = input_shape
    tokens = arch.stage_tokens(img_h, img_w)
    last = len(arch.depths) - 1
    rows = [_unit(arch, "patch_embed", 0, input_shape, dtype, dim=arch.in_chans, in_h=img_h, in_w=img_w)]
    for i in range(1, len(arch.depths)):
        rows.append(_unit(arch, "patch_merge", i, input_shape, dtype, dim=arch.dims[i - 1],
                          in_h=tokens[i - 1][0], in_w=tokens[i - 1][1]))
    rows.append(_unit(arch, "norm", last, input_shape, dtype, in_h=tokens[last][0], in_w=tokens[last][1]))
    return pd.DataFrame(rows)


def score_units(arch: Architecture, input_shape: Sequence[int], dtype: str) -> pd.DataFrame:
    """Window scoring + top-k of every stage (runs only where a block of the stage prunes)."""
    _, _, img_h, img_w = input_shape
    tokens, total = arch.stage_tokens(img_h, img_w), arch.windows_total(img_h, img_w)
    return pd.DataFrame([
        _unit(arch, "score", i, input_shape, dtype, window=arch.window_size[i], in_h=tokens[i][0],
              in_w=tokens[i][1], windows_total=total[i], windows_kept=total[i])
        for i in range(len(arch.depths))
    ])


def pair_units(arch: Architecture, input_shape: Sequence[int], dtype: str, stage: int,
               sparsities: Sequence[float]) -> pd.DataFrame:
    """A block pair of ``stage`` at each of ``sparsities``."""
    _, _, img_h, img_w = input_shape
    (h, w), total = arch.stage_tokens(img_h, img_w)[stage], arch.windows_total(img_h, img_w)[stage]
    return pd.DataFrame([
        _unit(arch, "block_pair", stage, input_shape, dtype, heads=arch.num_heads[stage],
              window=arch.window_size[stage], mlp_ratio=arch.mlp_ratio, in_h=h, in_w=w, windows_total=total,
              windows_kept=kept_windows(total, s), sparsity=float(s))
        for s in sparsities
    ])


def config_units(arch: Architecture, input_shape: Sequence[int], dtype: str,
                 block_sparsity: Sequence[Sequence[float]]) -> pd.DataFrame:
    """Every unit of one forward at a per-block sparsity, with a ``weight`` column.

    The profiler times block pairs at one sparsity; a pair whose two blocks differ
    (per-block granularity) counts as half a pair at each, and a lone last block of an
    odd-depth stage as half a pair.
    """
    fixed = fixed_units(arch, input_shape, dtype)
    scores = score_units(arch, input_shape, dtype)
    parts = [fixed.iloc[:1]]
    for stage, values in enumerate(block_sparsity):
        if stage:
            parts.append(fixed[(fixed.layer == "patch_merge") & (fixed.stage == stage)])
        total = scores.windows_total.iloc[stage]
        if any(kept_windows(total, s) < total for s in values):
            parts.append(scores.iloc[stage:stage + 1])
        for index, start in enumerate(range(0, len(values), 2)):
            pair = list(values[start:start + 2])
            weights = [1.0] if len(pair) == 2 and pair[0] == pair[1] else [0.5] * len(pair)
            units = pair_units(arch, input_shape, dtype, stage, pair[:len(weights)]).assign(index=index)
            parts.append(units.assign(weight=weights))
    parts.append(fixed.iloc[-1:])
    return pd.concat(parts, ignore_index=True).fillna({"weight": 1.0})


def unit_features(units: pd.DataFrame) -> np.ndarray:
    """Model inputs ``(n_units, len(FEATURES))`` from descriptor rows.

    Fields a unit kind does not use are zeroed, so a row's filler values (the profiler's
    conventions for e.g. ``heads`` of a patch merge) cannot change a prediction: heads and
    MLP ratio count for block pairs only, the window for block pairs and scoring.  A score
    unit's cost hardly depends on how many windows the stage keeps, and a model's stage
    keeps several counts at once, so it sees ``windows_kept = windows_total``.  ``v2`` marks
    the Swin V2 block pairs and mergings (read from the signature), whose kernels differ at
    the same shapes: cosine attention, the position-bias MLP, norms after the projections.
    """
    missing = [c for c in DESCRIPTORS if c not in units.columns]
    if missing:
        raise ValueError(f"layer descriptors lack columns {missing}; expected the profile schema's {DESCRIPTORS}")
    bad = sorted(set(units["layer"]) - set(UNIT_KINDS))
    if bad:
        raise ValueError(f"cannot predict layer kinds {bad} as units; units are {UNIT_KINDS} "
                         "(predict whole models with predict_config)")
    flops, moved = unit_costs(units)
    total = units["windows_total"].to_numpy(float)
    is_pair = (units["layer"] == "block_pair").to_numpy()
    windowed = is_pair | (units["layer"] == "score").to_numpy()
    kept = np.where(is_pair, units["windows_kept"].to_numpy(float), total)
    cols = {
        "dim": units["dim"], "out_dim": units["out_dim"], "heads": np.where(is_pair, units["heads"], 0),
        "window": np.where(windowed, units["window"], 0), "mlp_ratio": np.where(is_pair, units["mlp_ratio"], 0),
        "in_h": units["in_h"], "in_w": units["in_w"], "batch": units["batch"],
        "dtype_bytes": units["dtype"].map(DTYPE_BYTES), "windows_total": total, "windows_kept": kept,
        "kept_frac": np.divide(kept, total, out=np.ones_like(total), where=total > 0),
        "tokens": units["in_h"] * units["in_w"],
        "rows": np.where(is_pair, units["batch"] * kept * units["window"] ** 2, 0),
        "log_flops": np.log(flops + 1.0), "log_bytes": np.log(moved + 1.0),
        "intensity": flops / np.maximum(moved, 1.0),
        "v2": units["layer"].isin(KIND_UNITS).to_numpy() & (signature_blocks(units["signature"]) == "v2"),
    }
    return np.column_stack([np.asarray(cols[f], dtype=float) for f in FEATURES])
