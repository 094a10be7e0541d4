"""Layer units of a SparseSwin at a config, their descriptors, analytic FLOPs and bytes.

A *unit* is what the profiler times in isolation (see ``profiler/schema.py``): patch_embed,
patch_merge (stages 2..), score (a stage where some block prunes), block_pair, norm.  The
same descriptor columns come from a profile row (fitting) and from :func:`config_units`
(prediction), and :func:`unit_features` turns either into the model's inputs, so fitting
and prediction cannot disagree about what a unit is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..sparse.convert import sparse_backbone
from ..sparse.windows import kept_windows

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
UNIT_KINDS = ("patch_embed", "patch_merge", "score", "block_pair", "norm")

# descriptor columns a unit's features need (a subset of profiler.schema.COLUMNS)
DESCRIPTORS = ("layer", "stage", "signature", "dim", "out_dim", "heads", "window", "mlp_ratio", "in_h", "in_w",
               "batch", "dtype", "windows_total", "windows_kept")

FEATURES = (
    "dim", "out_dim", "heads", "window", "mlp_ratio", "in_h", "in_w", "batch", "dtype_bytes",
    "windows_total", "windows_kept", "kept_frac", "tokens", "rows", "log_flops", "log_bytes", "intensity",
)

_SIGNATURE = re.compile(r"^swin-e(\d+)-d([\d.]+)-h([\d.]+)-w([\d.]+)-p(\d+)$")


@dataclass(frozen=True)
class Architecture:
    """What decides a SparseSwin's unit shapes; built from a model or from its signature."""

    signature: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: tuple[int, ...]
    patch_size: int
    mlp_ratio: float = 4.0
    in_chans: int = 3

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    @classmethod
    def from_model(cls, model) -> Architecture:
        """Read a :class:`SparseSwin`, or the one inside a model (see ``sparsify``)."""
        model = sparse_backbone(model)
        return cls(model.signature, model.embed_dim, tuple(model.depths), tuple(model.num_heads),
                   tuple(model.window_size), model.patch_size, model.mlp_ratio, model.in_chans)

    @classmethod
    def from_signature(cls, signature: str, mlp_ratio: float = 4.0) -> Architecture:
        m = _SIGNATURE.match(signature)
        if m is None:
            raise ValueError(f"cannot read a Swin architecture from signature {signature!r}")
        depths = tuple(int(v) for v in m[2].split("."))
        windows = tuple(int(v) for v in m[4].split("."))
        return cls(signature, int(m[1]), depths, tuple(int(v) for v in m[3].split(".")),
                   windows * len(depths) if len(windows) == 1 else windows, int(m[5]), float(mlp_ratio))

    def stage_tokens(self, img_h: int, img_w: int) -> list[tuple[int, int]]:
        """Unpadded token map ``(H_i, W_i)`` of every stage for an ``img_h x img_w`` image."""
        h, w = math.ceil(img_h / self.patch_size), math.ceil(img_w / self.patch_size)
        out = []
        for i in range(len(self.depths)):
            if i:
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            out.append((h, w))
        return out

    def windows_total(self, img_h: int, img_w: int) -> list[int]:
        """Windows per image in every stage (of the padded grid)."""
        return [math.ceil(h / ws) * math.ceil(w / ws)
                for (h, w), ws in zip(self.stage_tokens(img_h, img_w), self.window_size)]


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


def unit_costs(units: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Analytic FLOPs and bytes moved of every unit (whole batch); a roofline's two inputs.

    Counts are first order: matmuls and attention as 2 FLOPs per multiply-add, norms and
    activations a few FLOPs per element; bytes are every activation read and written once
    per op plus the weights.  They only need to rank and scale units, not be exact.
    """
    kind = units["layer"].to_numpy()
    B = units["batch"].to_numpy(float)
    C = units["dim"].to_numpy(float)
    out = units["out_dim"].to_numpy(float)
    r = units["mlp_ratio"].to_numpy(float)
    N = units["window"].to_numpy(float) ** 2
    h, w = units["in_h"].to_numpy(float), units["in_w"].to_numpy(float)
    elt = units["dtype"].map(DTYPE_BYTES).to_numpy(float)
    flops, moved = np.zeros(len(units)), np.zeros(len(units))

    sel = kind == "patch_embed"
    if sel.any():
        p = units.loc[sel, "signature"].map(_patch_size).to_numpy(float)
        T = np.ceil(h[sel] / p) * np.ceil(w[sel] / p)
        flops[sel] = B[sel] * T * out[sel] * (2 * C[sel] * p * p + 8)
        moved[sel] = B[sel] * (C[sel] * h[sel] * w[sel] + 3 * T * out[sel]) + C[sel] * p * p * out[sel]

    sel = kind == "patch_merge"
    T = np.ceil(h / 2) * np.ceil(w / 2)
    flops[sel] = (B * T * 4 * C * (2 * out + 8))[sel]
    moved[sel] = (B * (h * w * C + 3 * T * 4 * C + T * out) + 4 * C * out)[sel]

    padded = units["windows_total"].to_numpy(float) * N
    sel = kind == "score"
    flops[sel] = (B * padded * (3 * C + 4))[sel]
    moved[sel] = (B * padded * (C + 2))[sel]

    sel = kind == "norm"
    flops[sel] = (8 * B * h * w * C)[sel]
    moved[sel] = (2 * B * h * w * C)[sel]

    sel = kind == "block_pair"
    M = B * units["windows_kept"].to_numpy(float) * N  # rows each block runs on
    heads = units["heads"].to_numpy(float)
    block_flops = M * (2 * C * C * (4 + 2 * r) + 4 * N * C + 16 * C + 8 * r * C) + 5 * M * heads * N
    block_moved = M * (C * 21 + 6 * r * C) + M * heads * N + C * C * (4 + 2 * r)
    flops[sel] = 2 * block_flops[sel]
    moved[sel] = 2 * block_moved[sel]
    return flops, moved * elt


def _patch_size(signature: str) -> int:
    m = re.search(r"-p(\d+)$", str(signature))
    if m is None:
        raise ValueError(f"patch_embed rows need a SparseSwin signature ending in -p<patch>, got {signature!r}")
    return int(m[1])


def unit_features(units: pd.DataFrame) -> np.ndarray:
    """Model inputs ``(n_units, len(FEATURES))`` from descriptor rows.

    Fields a unit kind does not use are zeroed, so a row's filler values (the profiler's
    conventions for e.g. ``heads`` of a patch merge) cannot change a prediction: heads and
    MLP ratio count for block pairs only, the window for block pairs and scoring.  A score
    unit's cost hardly depends on how many windows the stage keeps, and a model's stage
    keeps several counts at once, so it sees ``windows_kept = windows_total``.
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
    }
    return np.column_stack([np.asarray(cols[f], dtype=float) for f in FEATURES])
