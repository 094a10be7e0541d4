"""Search space and sparsity configs.

A *knob* is one sparsity value shared by a pair of Swin blocks (W-MSA + SW-MSA, the
SparseViT default) or by a single block.  A :class:`SparsityConfig` holds one value per
knob plus the signature of the model it was made for, so a config saved for Swin-T is
refused by Swin-S instead of silently meaning something else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ._atomic import write_text

Granularity = Literal["pair", "block"]
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(9))  # 0.0 … 0.8


def _check_ratio(value: float, where: str) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{where}: sparsity {value} is outside [0, 1); it is the fraction of windows "
            "skipped, so use e.g. 0.5 to skip half of them"
        )
    return value


def normalized_sparsity(value: float, where: str) -> float:
    """``value`` as a config holds it (rounded to 6 decimals), or a ValueError if outside [0, 1).

    The one rule for a sparsity value, whether it comes in a config or a checkpoint."""
    return _check_ratio(round(float(value), 6), where)


def decreases(values: Sequence[float]) -> bool:
    """Whether sparsity falls somewhere along one stage's knobs or blocks: SparseViT's order rule,
    which ``set_sparsity`` enforces unless a config says ``monotonic=False``."""
    return list(values) != sorted(values)


def _knob_blocks(depths: Sequence[int], granularity: Granularity) -> list[tuple[int, tuple[int, ...]]]:
    """``(stage, block indices)`` of every knob, in model order."""
    if granularity not in ("pair", "block"):
        raise ValueError(f"granularity must be 'pair' or 'block', got {granularity!r}")
    knobs = []
    for stage, depth in enumerate(depths):
        step = 2 if granularity == "pair" else 1
        for start in range(0, depth, step):
            knobs.append((stage, tuple(range(start, min(start + step, depth)))))
    return knobs


def _check_order(ratios: Sequence[float], stages: Sequence[int]) -> None:
    """Refuse sparsity that decreases along a stage (knob ``i`` lies in stage ``stages[i]``):
    SparseViT's rule, under which a later block keeps a subset of an earlier one's windows."""
    for stage in sorted(set(stages)):
        values = [r for r, s in zip(ratios, stages) if s == stage]
        if decreases(values):
            raise ValueError(
                f"sparsity decreases within stage {stage + 1} ({values}); sparsity must not decrease along a "
                "stage: use space.repair(ratios), or allow it with SearchSpace(..., monotonic=False) "
                "(SparsityConfig(..., monotonic=False) for a config built by hand)"
            )


@dataclass(frozen=True)
class SparsityConfig:
    """One sparsity per knob (fraction of windows skipped), for one model architecture.

    Frozen and hashable: it is the cache key of every latency and accuracy evaluation.
    ``monotonic`` (the default, SparseViT's rule) makes applying a config whose sparsity
    decreases along a stage an error; configs of a ``SearchSpace(monotonic=False)`` carry
    False.  It is not part of equality: it only decides which ratios are allowed.
    """

    ratios: tuple[float, ...]
    signature: str
    granularity: Granularity = "pair"
    monotonic: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        ratios = tuple(normalized_sparsity(r, f"knob {i}") for i, r in enumerate(self.ratios))
        object.__setattr__(self, "ratios", ratios)

    def __str__(self) -> str:
        return "[" + ", ".join(f"{r:g}" for r in self.ratios) + "]"

    @property
    def mean(self) -> float:
        return float(np.mean(self.ratios)) if self.ratios else 0.0

    def check_model(self, signature: str) -> None:
        if signature != self.signature:
            raise ValueError(
                f"this config was made for model {self.signature!r} but is applied to "
                f"{signature!r}; build a config from this model's search_space(model)"
            )

    def block_sparsity(self, signature: str, depths: Sequence[int]) -> list[list[float]]:
        """Expand knobs to one value per block, per stage, after checking the model (and the
        order within stages, unless ``monotonic`` is False)."""
        self.check_model(signature)
        knobs = _knob_blocks(depths, self.granularity)
        if len(knobs) != len(self.ratios):
            raise ValueError(
                f"config has {len(self.ratios)} values but the model has {len(knobs)} "
                f"{self.granularity} knobs"
            )
        if self.monotonic:
            _check_order(self.ratios, [stage for stage, _ in knobs])
        out = [[0.0] * d for d in depths]
        for (stage, blocks), r in zip(knobs, self.ratios):
            for b in blocks:
                out[stage][b] = r
        return out

    def to_dict(self) -> dict:
        return {"ratios": list(self.ratios), "signature": self.signature, "granularity": self.granularity,
                "monotonic": self.monotonic}

    @classmethod
    def from_dict(cls, data: dict) -> SparsityConfig:
        """A config from :meth:`to_dict`'s document, each field of its own type (a string of
        digits is not a list of ratios, nor ``true`` a ratio)."""
        if not isinstance(data, dict) or "ratios" not in data or "signature" not in data:
            raise ValueError(f"not a sparsity config (needs 'ratios' and 'signature' in an object): {data!r:.200}")
        ratios, signature = data["ratios"], data["signature"]
        if not isinstance(ratios, list | tuple) or not all(isinstance(r, int | float) and not isinstance(r, bool)
                                                           for r in ratios):
            raise ValueError(f"not a sparsity config: 'ratios' must be a list of numbers, got {ratios!r:.200}")
        if not isinstance(signature, str):
            raise ValueError(f"not a sparsity config: 'signature' must be a string, got {signature!r:.200}")
        monotonic = data.get("monotonic", True)
        if not isinstance(monotonic, bool):
            raise ValueError(f"not a sparsity config: 'monotonic' must be true or false, got {monotonic!r}")
        return cls(tuple(ratios), signature, data.get("granularity", "pair"), monotonic)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike, model=None) -> SparsityConfig:
        """Read a config from a JSON string or file; with ``model``, refuse a mismatch now."""
        text = str(source)
        if not text.lstrip().startswith(("{", "[")):  # JSON text starts so; anything else names a file
            try:
                with open(source, encoding="utf-8") as f:
                    text = f.read()
            except UnicodeDecodeError as err:
                raise ValueError(f"{source!s:.80}: not a sparsity config (not UTF-8 text)") from err
        try:
            cfg = cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, RecursionError) as err:
            raise ValueError(f"{source!s:.80}: not valid JSON ({type(err).__name__}: {err!s:.100})") from err
        if model is not None:
            cfg.check_model(model.signature)
        return cfg


@dataclass(frozen=True)
class Knob:
    name: str  # e.g. "stage3.pair1"
    stage: int
    blocks: tuple[int, ...]


class SearchSpace:
    """The knobs of one model, the grid each knob draws from, and the order constraint.

    With ``monotonic=True`` (SparseViT's rule) sparsity never decreases along the depth
    of a stage, so a later block keeps a subset of the windows of an earlier one.  A model's
    space: ``sparsevit_sdk.search_space(model)``.
    """

    def __init__(
        self,
        depths: Sequence[int],
        signature: str,
        *,
        granularity: Granularity = "pair",
        grid: Sequence[float] = DEFAULT_GRID,
        monotonic: bool = True,
    ) -> None:
        self.depths = tuple(int(d) for d in depths)
        self.signature = signature
        self.granularity = granularity
        if not grid:
            raise ValueError("grid must hold at least one sparsity value")
        self.grid = tuple(sorted(_check_ratio(g, "grid") for g in grid))
        if len(set(self.grid)) != len(self.grid):  # a repeated value would be drawn twice as often
            raise ValueError(f"grid has repeated values {sorted({g for g in self.grid if self.grid.count(g) > 1})}; "
                             "give each sparsity once")
        self.monotonic = monotonic
        kind = "pair" if granularity == "pair" else "block"
        self.knobs = []
        per_stage: dict[int, int] = {}
        for stage, blocks in _knob_blocks(self.depths, granularity):
            n = per_stage[stage] = per_stage.get(stage, 0) + 1
            self.knobs.append(Knob(f"stage{stage + 1}.{kind}{n}", stage, blocks))

    @property
    def num_knobs(self) -> int:
        return len(self.knobs)

    def __repr__(self) -> str:
        return (
            f"SearchSpace({self.signature}, {self.num_knobs} {self.granularity} knobs, "
            f"grid={list(self.grid)}, monotonic={self.monotonic})"
        )

    def _stage_groups(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for i, knob in enumerate(self.knobs):
            groups.setdefault(knob.stage, []).append(i)
        return list(groups.values())

    def repair(self, ratios: Sequence[float]) -> tuple[float, ...]:
        """Sort each stage's values ascending: keeps the sampled values, fixes the order."""
        out = [float(r) for r in ratios]
        if self.monotonic:
            for group in self._stage_groups():
                for i, v in zip(group, sorted(out[i] for i in group)):
                    out[i] = v
        return tuple(out)

    def config(self, ratios: Sequence[float]) -> SparsityConfig:
        """A validated config from one value per knob."""
        ratios = tuple(float(r) for r in ratios)
        if len(ratios) != self.num_knobs:
            raise ValueError(
                f"expected {self.num_knobs} sparsity values ({', '.join(k.name for k in self.knobs)}), "
                f"got {len(ratios)}"
            )
        cfg = SparsityConfig(ratios, self.signature, self.granularity, self.monotonic)
        self.validate(cfg)
        return cfg

    def validate(self, cfg: SparsityConfig) -> None:
        cfg.check_model(self.signature)
        if cfg.granularity != self.granularity or len(cfg.ratios) != self.num_knobs:
            raise ValueError(
                f"config has {len(cfg.ratios)} {cfg.granularity} values; this space has "
                f"{self.num_knobs} {self.granularity} knobs"
            )
        if self.monotonic:
            _check_order(cfg.ratios, [k.stage for k in self.knobs])

    def uniform(self, sparsity: float) -> SparsityConfig:
        return self.config([_check_ratio(sparsity, "uniform")] * self.num_knobs)

    def dense(self) -> SparsityConfig:
        return self.uniform(0.0)

    def sparsest(self) -> SparsityConfig:
        return self.uniform(self.grid[-1])

    def sample(self, rng: np.random.Generator | int | None = None) -> SparsityConfig:
        """Draw each knob uniformly from the grid, then repair the order."""
        rng = np.random.default_rng(rng)
        picks = rng.integers(0, len(self.grid), size=self.num_knobs)
        return self.decode(picks)

    def decode(self, genome: Sequence[int]) -> SparsityConfig:
        """Grid indices (a search genome) → repaired config."""
        if len(genome) != self.num_knobs:
            raise ValueError(f"genome has {len(genome)} genes, space has {self.num_knobs} knobs")
        return self.config(self.repair([self.grid[int(g)] for g in genome]))

    def encode(self, cfg: SparsityConfig) -> list[int]:
        """Config → grid indices; every value must lie on the grid."""
        self.validate(cfg)
        try:
            return [self.grid.index(r) for r in cfg.ratios]
        except ValueError as err:
            raise ValueError(f"config {cfg} has values off the grid {list(self.grid)}") from err
