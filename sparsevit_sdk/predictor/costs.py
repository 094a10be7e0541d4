"""The cost table: unit costs of one model and input tabulated per sparsity value, so that a
whole model at any config is a few array gathers (what search and fitting sum)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..arch import Architecture, kept_windows
from ..config import SearchSpace
from .features import fixed_units, pair_units, score_units
from .rows import row_config

Prices = Callable[[pd.DataFrame], np.ndarray]  # unit rows -> ms of each


class CostTable:
    """Unit costs of one (architecture, input shape, dtype), filled lazily per sparsity value,
    so that scoring thousands of configs is a few array gathers."""

    def __init__(self, price: Prices, arch: Architecture, input_shape: tuple[int, ...], dtype: str) -> None:
        self.price, self.arch, self.input_shape, self.dtype = price, arch, input_shape, dtype
        self.fixed_ms = float(price(fixed_units(arch, input_shape, dtype)).sum())
        scores = score_units(arch, input_shape, dtype)
        self.score_ms = price(scores)
        self.windows_total = scores["windows_total"].to_numpy()
        self._columns: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # value → (pair ms, prunes) per stage
        self._knobs: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # granularity → (stage, pairs) per knob

    def columns(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(stages, len(values))`` ms of one block pair of each stage at each sparsity value,
        and whether that value prunes anything in the stage."""
        missing = [float(v) for v in values if float(v) not in self._columns]
        if missing:
            stages = range(len(self.arch.depths))
            units = pd.concat([pair_units(self.arch, self.input_shape, self.dtype, s, missing) for s in stages],
                              ignore_index=True)
            ms = self.price(units).reshape(len(stages), len(missing))
            for j, v in enumerate(missing):
                prunes = np.array([kept_windows(int(n), v) < n for n in self.windows_total])
                self._columns[v] = (ms[:, j], prunes)
        ms, prunes = zip(*(self._columns[float(v)] for v in values))
        return np.stack(ms, axis=1), np.stack(prunes, axis=1)

    def knobs(self, granularity: str) -> tuple[np.ndarray, np.ndarray]:
        """Stage of every knob and how many block pairs it sets (half for a single block)."""
        if granularity not in self._knobs:
            knobs = SearchSpace(self.arch.depths, self.arch.signature, granularity=granularity).knobs
            self._knobs[granularity] = (np.array([k.stage for k in knobs]),
                                        np.array([len(k.blocks) / 2 for k in knobs]))
        return self._knobs[granularity]

    def layer_sum(self, ratios: np.ndarray, granularity: str) -> np.ndarray:
        """Σ unit ms for every row of ``ratios: (n_configs, n_knobs)``."""
        stages, pairs = self.knobs(granularity)
        if ratios.shape[1] != len(stages):
            raise ValueError(f"configs have {ratios.shape[1]} values; the model has {len(stages)} {granularity} knobs")
        values, index = np.unique(ratios, return_inverse=True)
        index = index.reshape(ratios.shape)
        ms, prunes = self.columns(values)  # (S, U) each
        total = self.fixed_ms + (pairs * ms[stages, index]).sum(axis=1)
        knob_prunes = prunes[stages, index]  # (n, K)
        stage_prunes = np.stack([knob_prunes[:, stages == s].any(axis=1) for s in range(len(self.score_ms))], axis=1)
        return total + stage_prunes @ self.score_ms


def layer_sums(table_of: Callable[[Architecture, tuple[int, ...], str], CostTable],
               models: pd.DataFrame) -> np.ndarray:
    """Σ unit predictions (before scale and overhead) of whole-model rows, from the cost
    tables ``table_of(arch, input_shape, dtype)`` gives."""
    models = models.reset_index(drop=True)
    out = np.empty(len(models))
    for (signature, mlp, h, w, b, dtype), group in models.groupby(
            ["signature", "mlp_ratio", "img_h", "img_w", "batch", "dtype"], sort=False):
        arch = Architecture.from_signature(signature, mlp)
        table = table_of(arch, (b, arch.in_chans, h, w), dtype)
        configs = [row_config(row, arch) for row in group.itertuples()]
        for granularity in {c.granularity for c in configs}:
            sel = [i for i, c in enumerate(configs) if c.granularity == granularity]
            ratios = np.array([configs[i].ratios for i in sel], dtype=float)
            out[group.index[sel]] = table.layer_sum(ratios, granularity)
    return out
