"""What the profiling sweep measures: the unit and whole-model tasks of one SparseSwin.

For each input shape (resolution x batch) one dense forward through the model's own
modules yields the input of every unit; each unit is then timed in isolation:

- ``patch_embed`` on the image; ``patch_merge`` (``stage.downsample``) on a stage's input;
- ``score``: ``stage.select`` with every block of the stage at sparsity ``s`` (so scoring
  and top-k run), for each grid value ``s > 0`` — at 0 nothing is scored;
- ``block_pair``: ``stage.run_block(2j)`` then ``run_block(2j + 1)`` on the padded buffer
  over the windows ``select`` kept at sparsity ``s``, for every grid value;
- ``norm``: the final LayerNorm on the last stage's output.

Every pair of a stage has the same dims, heads, window and token map, and runs the same
code, so a stage's pair is timed once per sparsity and recorded once, with ``index`` 0:
copies for the other pairs would be duplicate rows that overweight deep stages when a
predictor is fitted.  A predictor applies the row to every pair of the stage.

``model`` rows time ``model(x)`` through :func:`measure_latency` at the uniform config of
every grid value plus ``random_configs`` distinct non-uniform ``space.sample`` draws per
shape, seeded by ``(seed, H, W, batch)``.  ``model(x)`` returns the four stage maps: it
runs patch_embed, the merges, the pairs and a score unit per pruning stage, but not the
final norm (that unit serves ``forward_features``).

Each task carries its descriptor row and a rough cost (FLOPs from
:func:`sparsevit_sdk.arch.unit_costs`) that weights the progress bar; ``sweep.py`` runs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..arch import kept_windows, num_windows, unit_costs
from ..config import SearchSpace, SparsityConfig
from ..devices import TORCH_DTYPES
from ..sparse.convert import set_sparsity
from ..sparse.swin import SparseSwin
from ..sparse.windows import pad_to_windows
from .forward import ModelForward
from .timing import LatencyStats, measure_latency, time_callable

_CALL_OVERHEAD_FLOPS = 2e6  # launch cost of one unit call, in FLOPs, for the ETA only


@dataclass(frozen=True)
class SweepSettings:
    """How hard to measure: timed calls per round for each layer unit (``repeats``) and
    whole model (``model_repeats``), and how many configs to sample.

    With ``rounds > 1`` the whole sweep runs that many times and each row keeps the
    statistics of its quietest round (lowest p10): on a shared machine load comes and
    goes, and spreading a measurement over the sweep keeps one busy minute from biasing
    some rows against others.  A row's ``repeats`` counts the timed calls of all rounds.
    """

    warmup: int = 2
    repeats: int = 15
    model_repeats: int = 10
    random_configs: int = 16
    rounds: int = 1

    def __post_init__(self) -> None:
        if (self.warmup < 0 or self.repeats < 1 or self.model_repeats < 1 or self.random_configs < 0
                or self.rounds < 1):
            raise ValueError("need warmup >= 0, repeats >= 1, model_repeats >= 1, random_configs >= 0 and "
                             f"rounds >= 1; got {self}")

    @property
    def model_calls(self) -> int:
        """Forwards one whole model costs: warm-up and timed calls, every round."""
        return self.rounds * (self.warmup + self.model_repeats)

    @classmethod
    def quick(cls) -> SweepSettings:
        """A smoke test of the whole sweep (seconds for swin_micro at 224 on a 2-core CPU)."""
        return cls(warmup=1, repeats=3, model_repeats=3, random_configs=4)


def parse_resolution(value: str | int | Sequence[int]) -> tuple[int, int]:
    """``"672x448"``, ``"672"``, ``672`` or ``(672, 448)`` → ``(H, W)`` in pixels."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*", value)
        if not match:
            raise ValueError(f"resolution {value!r} is not HxW (e.g. 672x672) or a single size (e.g. 672)")
        h, w = int(match[1]), int(match[2] or match[1])
    elif isinstance(value, int):
        h = w = value
    else:
        h, w = (int(v) for v in value)
    if h < 1 or w < 1:
        raise ValueError(f"resolution {h}x{w} must be positive")
    return h, w



def _flops(row: dict) -> float:
    """FLOPs of the unit a descriptor row stands for, by the one cost model (:func:`~sparsevit_sdk.arch.unit_costs`)."""
    return float(unit_costs({k: [v] for k, v in row.items()})[0][0])


def _at_sparsity(row: dict, sparsity: float) -> dict:
    """A stage's block-pair (or score) row at ``sparsity``: the windows it keeps follow."""
    return {**row, "sparsity": sparsity, "windows_kept": kept_windows(row["windows_total"], sparsity)}


@dataclass
class Activations:
    """Inputs of every unit for one (B, C, H, W) image, from one dense forward."""

    image: torch.Tensor  # (B, C, H, W)
    merge_in: list[torch.Tensor]  # stage input before merging, NHWC (stage 0: patch_embed output)
    stage_in: list[torch.Tensor]  # after merging, unpadded (B, H_i, W_i, C_i)
    final: torch.Tensor  # last stage output (B, H, W, C)


def activations(model: SparseSwin, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
                 seed: int) -> Activations:
    image = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    x = model.patch_embed(image)
    merge_in, stage_in = [], []
    for stage in model.stages:
        merge_in.append(x)
        stage_in.append(stage.downsample(x))
        x = stage(x)
    return Activations(image, merge_in, stage_in, x)


@dataclass
class Task:
    """One measurement: its descriptor columns, its rough cost, and how to take it."""

    row: dict
    flops: float  # rough FLOPs of one call, only to weight the progress bar's ETA
    calls: int  # warm-up + repeats, per round
    repeats: int  # timed calls over all rounds: a stored row with fewer is measured again
    measure: Callable[[Activations], LatencyStats]  # one round


class SweepPlan:
    """Plans the tasks of one model on one device (``sweep.py`` runs them); with ``whole`` (a user's
    whole model around ``model``), a ``whole`` row per input shape as well, timed beside the dense model.

    ``units`` False leaves out the layer units; ``configs`` replaces the sampled whole-model configs
    (``[]``: none), so a calibration can time the models it chooses when it chooses them."""

    def __init__(self, model: SparseSwin, name: str, device: torch.device, dtype: str, space: SearchSpace,
                 settings: SweepSettings, seed: int, clock: str, runtime: str = "eager",
                 whole: ModelForward | None = None, *, units: bool = True,
                 configs: Sequence[SparsityConfig] | None = None) -> None:
        self.model, self.name, self.device, self.dtype = model, name, device, dtype
        self.space, self.settings, self.seed, self.clock, self.runtime = space, settings, seed, clock, runtime
        self.whole, self.units, self.configs = whole, units, configs

    def activations(self, img_h: int, img_w: int, batch: int) -> Activations:
        """Unit inputs from a dense forward (their values do not change any unit's cost)."""
        set_sparsity(self.model, self.space.dense())
        shape = (batch, self.model.in_chans, img_h, img_w)
        return activations(self.model, shape, self.device, TORCH_DTYPES[self.dtype], self.seed)

    def tasks(self, img_h: int, img_w: int, batch: int) -> list[Task]:
        """Every unit and whole-model measurement for one input shape."""
        acts = self.activations(img_h, img_w, batch)
        base = dict(model=self.name, signature=self.model.signature, img_h=img_h, img_w=img_w, batch=batch,
                    dtype=self.dtype, index=0, windows_total=0, windows_kept=0, sparsity=0.0, config="",
                    runtime="eager")
        units, pairs = self._unit_tasks(acts, base)
        fixed_flops = sum(t.flops for t in units if t.row["layer"] in ("patch_embed", "patch_merge"))
        rng = np.random.default_rng([self.seed, img_h, img_w, batch])
        configs = self._configs(rng) if self.configs is None else list(self.configs)
        models = [self._model_task(cfg, acts, base, fixed_flops, pairs) for cfg in configs]
        dense = self.space.dense()
        whole = [] if self.whole is None or dense not in configs else [self._whole_task(models[configs.index(dense)])]
        return (units if self.units else []) + models + whole

    def _stage_row(self, base: dict, i: int) -> dict:
        """Descriptor fields every row of stage ``i`` shares (model rows use stage 0's, with stage -1)."""
        stage = self.model.stages[max(i, 0)]
        return {**base, "stage": i, "heads": stage.blocks[0].attn.num_heads, "window": stage.window_size,
                "mlp_ratio": self.model.mlp_ratio}  # the converters read it from the source's own MLP

    def _unit(self, row: dict, build: Callable[[Activations], Callable[[], object]]) -> Task:
        s = self.settings

        def measure(acts: Activations) -> LatencyStats:
            return time_callable(build(acts), self.device, warmup=s.warmup, repeats=s.repeats, clock=self.clock)
        return Task(row, _flops(row) + _CALL_OVERHEAD_FLOPS, s.warmup + s.repeats, s.repeats * s.rounds, measure)

    def _unit_tasks(self, acts: Activations, base: dict) -> tuple[list[Task], list[dict]]:
        """Layer-unit tasks, and per stage the row of its block pair (before a sparsity is set)."""
        model = self.model
        _, in_chans, H, W = acts.image.shape
        tasks = [self._unit({**self._stage_row(base, 0), "layer": "patch_embed", "dim": in_chans,
                             "out_dim": acts.merge_in[0].shape[-1], "in_h": H, "in_w": W},
                            lambda a: lambda: model.patch_embed(a.image))]
        pairs = []
        for i, stage in enumerate(model.stages):
            _, Hi, Wi, Ci = acts.stage_in[i].shape
            row = self._stage_row(base, i)
            if i > 0:
                _, Hm, Wm, Cm = acts.merge_in[i].shape
                tasks.append(self._unit({**row, "layer": "patch_merge", "dim": Cm, "out_dim": Ci, "in_h": Hm,
                                         "in_w": Wm}, lambda a, i=i, st=stage: lambda: st.downsample(a.merge_in[i])))
            row.update(layer="block_pair", dim=Ci, out_dim=Ci, in_h=Hi, in_w=Wi,
                       windows_total=num_windows(Hi, Wi, stage.window_size))
            pairs.append(row)
            for s in self.space.grid:
                tasks.append(self._unit(_at_sparsity(row, s), lambda a, i=i, s=s: self._pair(i, a.stage_in[i], s)))
                if s > 0:
                    tasks.append(self._unit({**_at_sparsity(row, s), "layer": "score"},
                                            lambda a, i=i, s=s: self._score(i, a.stage_in[i], s)))
        _, Hf, Wf, Cf = acts.final.shape
        tasks.append(self._unit({**self._stage_row(base, len(model.stages) - 1), "layer": "norm", "dim": Cf,
                                 "out_dim": Cf, "in_h": Hf, "in_w": Wf}, lambda a: lambda: model.norm(a.final)))
        return tasks, pairs

    def _model_task(self, cfg: SparsityConfig, acts: Activations, base: dict, fixed_flops: float,
                    pairs: list[dict]) -> Task:
        model, s = self.model, self.settings
        per_block = cfg.block_sparsity(model.signature, model.depths)
        flops = fixed_flops + sum(_flops(_at_sparsity(pairs[i], r)) for i, ratios in enumerate(per_block)
                                  for r in ratios[::2])
        flops += _CALL_OVERHEAD_FLOPS * (sum(model.depths) + 2 * len(model.depths))
        _, in_chans, H, W = acts.image.shape
        row = {**self._stage_row(base, -1), "layer": "model", "dim": in_chans, "out_dim": model.dims[-1],
               "in_h": H, "in_w": W, "sparsity": round(cfg.mean, 6), "config": json.dumps(list(cfg.ratios)),
               "runtime": self.runtime}
        shape = tuple(acts.image.shape)

        def measure(_: Activations) -> LatencyStats:
            set_sparsity(model, cfg)
            return measure_latency(model, shape, self.device, warmup=s.warmup, repeats=s.model_repeats,
                                   dtype=TORCH_DTYPES[self.dtype], clock=self.clock, runtime=self.runtime,
                                   threads=torch.get_num_threads())
        return Task(row, flops, s.warmup + s.model_repeats, s.model_repeats * s.rounds, measure)

    def _whole_task(self, dense: Task) -> Task:
        """The user's whole model at sparsity 0, as the user calls it, beside the dense backbone row."""
        s, whole = self.settings, self.whole
        shape = (dense.row["batch"], self.model.in_chans, dense.row["img_h"], dense.row["img_w"])
        set_sparsity(self.model, self.space.dense())
        calls = len(whole.probe(torch.randn(shape).to(self.device, TORCH_DTYPES[self.dtype])))
        row = {**dense.row, "layer": "whole", "model": whole.key(), "index": calls}

        def measure(_: Activations) -> LatencyStats:
            set_sparsity(self.model, self.space.dense())
            return measure_latency(whole, shape, self.device, warmup=s.warmup, repeats=s.model_repeats,
                                   dtype=TORCH_DTYPES[self.dtype], clock=self.clock, runtime=self.runtime,
                                   threads=torch.get_num_threads())
        return Task(row, 2 * dense.flops, s.warmup + s.model_repeats, s.model_repeats * s.rounds, measure)

    def _configs(self, rng: np.random.Generator) -> list[SparsityConfig]:
        """Uniform configs over the grid, then distinct non-uniform samples (fewer if the space is tiny)."""
        configs = [self.space.uniform(s) for s in self.space.grid]
        target = len(configs) + self.settings.random_configs
        seen = set(configs)
        for _ in range(100 * self.settings.random_configs):
            if len(configs) >= target:
                break
            cfg = self.space.sample(rng)
            if cfg not in seen:
                seen.add(cfg)
                configs.append(cfg)
        return configs

    def _prepare(self, i: int, x: torch.Tensor, s: float):
        """Stage ``i`` with every block at ``s``, a fresh padded buffer and its layout."""
        stage = self.model.stages[i]
        stage.sparsity = [s] * len(stage.blocks)
        _, H, W, _ = x.shape
        return stage, pad_to_windows(x, stage.window_size), stage.layout(H, W, self.device)

    def _pair(self, i: int, x: torch.Tensor, s: float) -> Callable[[], object]:
        stage, xp, layout = self._prepare(i, x, s)
        windows = stage.select(xp, layout)

        def run() -> None:
            stage.run_block(0, xp, windows[0], layout)
            stage.run_block(1, xp, windows[1], layout)
        return run

    def _score(self, i: int, x: torch.Tensor, s: float) -> Callable[[], object]:
        stage, xp, layout = self._prepare(i, x, s)
        return lambda: stage.select(xp, layout)

