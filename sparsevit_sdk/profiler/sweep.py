"""The profiling sweep: time every layer unit and sampled whole models of one SparseSwin.

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

CPU timings run at a fixed thread count (default 1: on a shared machine single-threaded
minima are stable, multi-threaded medians drift); ``clock="cpu"`` times them with the
thread's CPU time, which leaves out the time other processes held the core.  Rows are
merged into the dataset every ``FLUSH_S`` seconds, at the end, and on an interruption.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .._version import __version__
from ..config import SearchSpace, SparsityConfig
from ..devices import resolve_device
from ..models import build_model
from ..sparse.convert import sparse_backbone
from ..sparse.swin import SparseSwin
from ..sparse.windows import kept_windows, pad_to_windows
from .dataset import claim_folder, empty_frame, merge_rows, read_frame
from .fingerprint import device_fingerprint
from .schema import KEY, validate_frame
from .timing import CLOCKS, LatencyStats, measure_latency, num_threads, time_callable

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FLUSH_S = 30.0  # most measuring time a hard kill (SIGKILL, power loss) can lose
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


def _block_flops(tokens: int, dim: int, window: int, mlp_ratio: float) -> float:
    """Rough FLOPs of one Swin block over ``tokens`` tokens (qkv, proj, MLP, attention)."""
    return 2.0 * tokens * dim * (dim * (4 + 2 * mlp_ratio) + 2 * window**2)


@dataclass
class _Activations:
    """Inputs of every unit for one (B, C, H, W) image, from one dense forward."""

    image: torch.Tensor  # (B, C, H, W)
    merge_in: list[torch.Tensor]  # stage input before merging, NHWC (stage 0: patch_embed output)
    stage_in: list[torch.Tensor]  # after merging, unpadded (B, H_i, W_i, C_i)
    final: torch.Tensor  # last stage output (B, H, W, C)


def _activations(model: SparseSwin, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
                 seed: int) -> _Activations:
    image = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    x = model.patch_embed(image)
    merge_in, stage_in = [], []
    for stage in model.stages:
        merge_in.append(x)
        stage_in.append(stage.downsample(x))
        x = stage(x)
    return _Activations(image, merge_in, stage_in, x)


@dataclass
class _Task:
    """One measurement: its descriptor columns, its rough cost, and how to take it."""

    row: dict
    flops: float  # rough FLOPs of one call, only to weight the progress bar's ETA
    calls: int  # warm-up + repeats, per round
    repeats: int  # timed calls over all rounds: a stored row with fewer is measured again
    measure: Callable[[_Activations], LatencyStats]  # one round


class _Sweep:
    """Plans and runs the tasks of one model on one device."""

    def __init__(self, model: SparseSwin, name: str, device: torch.device, dtype: str, space: SearchSpace,
                 settings: SweepSettings, seed: int, clock: str) -> None:
        self.model, self.name, self.device, self.dtype = model, name, device, dtype
        self.space, self.settings, self.seed, self.clock = space, settings, seed, clock

    def activations(self, img_h: int, img_w: int, batch: int) -> _Activations:
        """Unit inputs from a dense forward (their values do not change any unit's cost)."""
        self.model.set_sparsity(self.space.dense())
        shape = (batch, self.model.in_chans, img_h, img_w)
        return _activations(self.model, shape, self.device, DTYPES[self.dtype], self.seed)

    def tasks(self, img_h: int, img_w: int, batch: int) -> list[_Task]:
        """Every unit and whole-model measurement for one input shape."""
        acts = self.activations(img_h, img_w, batch)
        base = dict(model=self.name, signature=self.model.signature, img_h=img_h, img_w=img_w, batch=batch,
                    dtype=self.dtype, index=0, windows_total=0, windows_kept=0, sparsity=0.0, config="")
        units, pair_flops = self._unit_tasks(acts, base)
        fixed_flops = sum(t.flops for t in units if t.row["layer"] in ("patch_embed", "patch_merge"))
        rng = np.random.default_rng([self.seed, img_h, img_w, batch])
        models = [self._model_task(cfg, acts, base, fixed_flops, pair_flops) for cfg in self._configs(rng)]
        return units + models

    def _stage_row(self, base: dict, i: int) -> dict:
        """Descriptor fields every row of stage ``i`` shares (model rows use stage 0's, with stage -1)."""
        stage = self.model.stages[max(i, 0)]
        fc1 = stage.blocks[0].mlp.fc1
        return {**base, "stage": i, "heads": stage.blocks[0].attn.num_heads, "window": stage.window_size,
                "mlp_ratio": fc1.out_features / fc1.in_features}

    def _unit(self, row: dict, flops: float, build: Callable[[_Activations], Callable[[], object]]) -> _Task:
        s = self.settings

        def measure(acts: _Activations) -> LatencyStats:
            return time_callable(build(acts), self.device, warmup=s.warmup, repeats=s.repeats, clock=self.clock)
        return _Task(row, flops + _CALL_OVERHEAD_FLOPS, s.warmup + s.repeats, s.repeats * s.rounds, measure)

    def _unit_tasks(self, acts: _Activations, base: dict) -> tuple[list[_Task], list[Callable[[float], float]]]:
        """Layer-unit tasks, and per stage the FLOPs of a block pair as a function of sparsity."""
        model = self.model
        B, in_chans, H, W = acts.image.shape
        _, Ht, Wt, C = acts.merge_in[0].shape
        p = model.patch_size
        tasks = [self._unit({**self._stage_row(base, 0), "layer": "patch_embed", "dim": in_chans, "out_dim": C,
                             "in_h": H, "in_w": W}, 2.0 * B * Ht * Wt * in_chans * p * p * C,
                            lambda a: lambda: model.patch_embed(a.image))]
        pair_flops = []
        for i, stage in enumerate(model.stages):
            _, Hi, Wi, Ci = acts.stage_in[i].shape
            row = self._stage_row(base, i)
            if i > 0:
                _, Hm, Wm, Cm = acts.merge_in[i].shape
                tasks.append(self._unit({**row, "layer": "patch_merge", "dim": Cm, "out_dim": Ci, "in_h": Hm,
                                         "in_w": Wm}, 2.0 * B * Hi * Wi * 4 * Cm * Ci,
                                        lambda a, i=i, st=stage: lambda: st.downsample(a.merge_in[i])))
            nW = stage.layout(Hi, Wi, self.device).num_windows
            ws, ratio = row["window"], row["mlp_ratio"]
            pair_flops.append(lambda s, nW=nW, Ci=Ci, ws=ws, r=ratio:
                              2 * _block_flops(B * kept_windows(nW, s) * ws * ws, Ci, ws, r))
            row.update(dim=Ci, out_dim=Ci, in_h=Hi, in_w=Wi, windows_total=nW)
            for s in self.space.grid:
                at_s = {**row, "sparsity": s, "windows_kept": kept_windows(nW, s)}
                tasks.append(self._unit({**at_s, "layer": "block_pair"}, pair_flops[i](s),
                                        lambda a, i=i, s=s: self._pair(i, a.stage_in[i], s)))
                if s > 0:
                    tasks.append(self._unit({**at_s, "layer": "score"}, 4.0 * B * Hi * Wi * Ci,
                                            lambda a, i=i, s=s: self._score(i, a.stage_in[i], s)))
        _, Hf, Wf, Cf = acts.final.shape
        tasks.append(self._unit({**self._stage_row(base, len(model.stages) - 1), "layer": "norm", "dim": Cf,
                                 "out_dim": Cf, "in_h": Hf, "in_w": Wf}, 8.0 * B * Hf * Wf * Cf,
                                lambda a: lambda: model.norm(a.final)))
        return tasks, pair_flops

    def _model_task(self, cfg: SparsityConfig, acts: _Activations, base: dict, fixed_flops: float,
                    pair_flops: list[Callable[[float], float]]) -> _Task:
        model, s = self.model, self.settings
        per_block = cfg.block_sparsity(model.signature, model.depths)
        flops = fixed_flops + sum(pair_flops[i](r) for i, ratios in enumerate(per_block) for r in ratios[::2])
        flops += _CALL_OVERHEAD_FLOPS * (sum(model.depths) + 2 * len(model.depths))
        _, in_chans, H, W = acts.image.shape
        row = {**self._stage_row(base, -1), "layer": "model", "dim": in_chans, "out_dim": model.dims[-1],
               "in_h": H, "in_w": W, "sparsity": round(cfg.mean, 6), "config": json.dumps(list(cfg.ratios))}
        shape = tuple(acts.image.shape)

        def measure(_: _Activations) -> LatencyStats:
            model.set_sparsity(cfg)
            return measure_latency(model, shape, self.device, warmup=s.warmup, repeats=s.model_repeats,
                                   dtype=DTYPES[self.dtype], clock=self.clock)
        return _Task(row, flops, s.warmup + s.model_repeats, s.model_repeats * s.rounds, measure)

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


def dataset_path(out: str | os.PathLike, hw: str, name: str) -> Path:
    """Where :func:`profile_model` keeps the rows of model ``name`` measured on ``hw``."""
    return Path(out) / hw / f"{name}.parquet"


def _resolve_model(model: str | nn.Module, name: str | None) -> tuple[SparseSwin, str]:
    if isinstance(model, str):
        return build_model(model), name or model
    return copy.deepcopy(sparse_backbone(model)), name or "custom"


def profile_model(
    model: str | nn.Module,
    *,
    resolutions: Sequence[str | int | Sequence[int]] = ("224x224",),
    batches: Sequence[int] = (1,),
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    hw: str | None = None,
    out: str | os.PathLike | None = None,
    settings: SweepSettings | None = None,
    grid: Sequence[float] | None = None,
    threads: int | None = None,
    clock: str = "wall",
    seed: int = 0,
    resume: bool = False,
    name: str | None = None,
    note: str = "",
    progress: bool = True,
) -> pd.DataFrame:
    """Time every layer unit and sampled whole models of ``model``; return the new rows.

    ``model`` is a registered name (``swin_t``), a SparseSwin or a model ``sparsify`` made
    (its SparseSwin is copied, never modified).
    With ``out``, rows are merged into ``dataset_path(out, hw, name)`` next to a
    fingerprint sidecar; ``resume`` skips measurements already there with at least as many
    repeats.  ``threads`` defaults to 1 on the CPU; ``clock`` is "wall" (perf_counter) or
    "cpu" (thread CPU time, single-threaded CPU only).  ``grid`` defaults to the SearchSpace grid.
    """
    dev = resolve_device(device)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    shapes = [(*parse_resolution(r), int(b)) for r in resolutions for b in batches]
    if any(b < 1 for *_, b in shapes):
        raise ValueError(f"batch sizes must be >= 1, got {list(batches)}")
    net, name = _resolve_model(model, name)
    if any(d % 2 for d in net.depths):
        raise ValueError(f"profiling times block pairs, so every stage depth must be even; got {net.depths}")
    threads = threads or (1 if dev.type == "cpu" else None)
    if clock != "wall" and (clock not in CLOCKS or dev.type != "cpu" or threads != 1):
        raise ValueError(f"clock must be 'wall', or 'cpu' on the CPU with threads=1; got {clock!r}, "
                         f"device {dev}, threads {threads}")
    settings = settings or SweepSettings()
    space = SearchSpace.from_model(net, **({} if grid is None else {"grid": grid}))
    net.to(dev, DTYPES[dtype]).eval()

    with num_threads(threads), torch.inference_mode():
        fp = device_fingerprint(dev, hw=hw, threads=torch.get_num_threads(), clock=clock, note=note)
        path = None if out is None else dataset_path(out, fp["hw"], name)
        done: dict[tuple, int] = {}
        if path is not None:
            claim_folder(path.parent, fp)
            if path.exists():  # a damaged dataset is found now, not at the first merge after measuring
                old = read_frame(path)
                if resume:
                    done = dict(zip(old[list(KEY)].itertuples(index=False, name=None), old["repeats"]))
        sweep = _Sweep(net, name, dev, dtype, space, settings, seed, clock)
        common = dict(hw=fp["hw"], fingerprint_id=fp["fingerprint_id"], device=str(dev),
                      threads=fp["threads"], torch_version=torch.__version__, sdk_version=__version__)
        groups, skipped = [], 0
        for h, w, b in shapes:
            tasks = sweep.tasks(h, w, b)
            planned = [t for t in tasks if done.get(tuple({**common, **t.row}[k] for k in KEY), 0) < t.repeats]
            skipped += len(tasks) - len(planned)
            groups.append(((h, w, b), planned))
        logger.info("profiling %s on %s (%s, %d thread(s)): %d measurements over %d input shape(s), %d skipped "
                    "as already measured", name, fp["hw"], fp["name"], fp["threads"],
                    sum(len(p) for _, p in groups), len(shapes), skipped)
        rows = _run(sweep, groups, common, path, progress)
    frame = validate_frame(pd.DataFrame(rows), "profile") if rows else empty_frame()
    frame.attrs["fingerprints"] = {fp["fingerprint_id"]: fp}  # as read_profiles leaves them: fit() keeps the device
    return frame


def _run(sweep: _Sweep, groups: list, common: dict, path: Path | None, progress: bool) -> list[dict]:
    """Measure every planned task in every round, merging rows into ``path`` as we go; returns the rows."""
    rounds = sweep.settings.rounds
    best: dict[tuple[int, int], dict] = {}  # (group, task) → row of its quietest round so far
    pending: set[tuple[int, int]] = set()
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        if path is not None and pending:
            merge_rows(path, pd.DataFrame([best[k] for k in sorted(pending)]))
            logger.debug("merged %d rows into %s", len(pending), path)
        pending.clear()
        last_flush = time.monotonic()

    count = sum(len(tasks) for _, tasks in groups)
    total = rounds * sum(t.flops * t.calls for _, tasks in groups for t in tasks)
    bar = tqdm(total=total, disable=not progress or not total,
               bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed, {remaining} left")
    try:
        for rnd in range(rounds):
            done = 0
            for g, ((h, w, b), tasks) in enumerate(groups):
                acts = sweep.activations(h, w, b) if tasks else None
                for j, task in enumerate(tasks):
                    r = task.row
                    done += 1
                    bar.set_description_str(f"round {rnd + 1}/{rounds} [{done}/{count}] {sweep.name} {h}x{w} b{b} "
                                            f"{r['layer']} stage {r['stage']} s={r['sparsity']:.2f}")
                    stats = task.measure(acts)
                    old = best.get((g, j))
                    if old is None or stats.p10_ms < old["p10_ms"]:
                        best[g, j] = {**common, **r, "latency_ms": stats.median_ms, "p10_ms": stats.p10_ms,
                                      "p90_ms": stats.p90_ms, "min_ms": stats.min_ms,
                                      "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                    best[g, j]["repeats"] = (rnd + 1) * stats.repeats
                    pending.add((g, j))
                    bar.update(task.flops * task.calls)
                    if time.monotonic() - last_flush > FLUSH_S:
                        flush()
    except BaseException:
        if pending:  # keep what was measured; the original error still propagates
            try:
                flush()
                logger.warning("interrupted: %d measurements saved in %s; re-run with resume to finish",
                               len(best), path)
            except OSError as err:
                logger.error("could not save the last measurements: %s", err)
        raise
    finally:
        bar.close()
    flush()
    return list(best.values())
