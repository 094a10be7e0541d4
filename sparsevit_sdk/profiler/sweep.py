"""The profiling sweep: time every layer unit and sampled whole models of one SparseSwin.

What is measured, and how each unit is isolated, is planned in :mod:`.plan`; here the
planned tasks run and their rows reach the dataset.

CPU timings run at a fixed thread count (default 1: on a shared machine single-threaded
minima are stable, multi-threaded medians drift); ``clock="cpu"`` times them with the
thread's CPU time, which leaves out the time other processes held the core.  Rows are
merged into the dataset every ``FLUSH_S`` seconds, at the end, and on an interruption.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

from .._progress import progress_bar
from .._version import __version__
from ..config import SparsityConfig
from ..dataset.files import claim_folder, dataset_path, merge_rows, read_frame
from ..dataset.schema import KEY, empty_frame, validate_frame
from ..devices import TORCH_DTYPES, dtype_name, resolve_device
from ..models import build_model
from ..runtimes import check_runtime
from ..sparse.convert import search_space
from ..sparse.swin import SparseSwin
from .fingerprint import device_fingerprint
from .forward import Call, ModelForward
from .plan import SweepPlan, SweepSettings, parse_resolution
from .timing import CLOCKS, num_threads

__all__ = ["FLUSH_S", "SweepSettings", "parse_resolution", "profile_model"]

logger = logging.getLogger(__name__)

FLUSH_S = 30.0  # most measuring time a hard kill (SIGKILL, power loss) can lose


def _resolve_model(model: str | nn.Module, name: str | None, call: Call) -> tuple[SparseSwin, str, ModelForward | None]:
    """The SparseSwin to sweep, the name its rows carry, and the whole model around it (a copy:
    the user's model is never modified), if there is more to it than the backbone."""
    if isinstance(model, str):
        return build_model(model), name or model, None
    whole = ModelForward(copy.deepcopy(model), call)  # the copy keeps its sparse view over its own stages
    if whole.is_backbone:
        return whole.model, name or "custom", None
    return whole.backbone, name or whole.key(), whole


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
    runtime: str = "eager",
    seed: int = 0,
    resume: bool = False,
    name: str | None = None,
    note: str = "",
    call: Call = None,
    progress: bool = True,
    units: bool = True,
    configs: Sequence[SparsityConfig] | None = None,
) -> pd.DataFrame:
    """Time every layer unit and sampled whole models of ``model``; return the new rows.

    ``model`` is a registered name (``swin_t``), a SparseSwin or a model ``sparsify`` made
    (copied, never modified).  A whole model (a classifier, a segmenter around its Swin) is also
    timed as the user calls it (``call``, see :class:`~.forward.ModelForward`) at sparsity 0
    beside its backbone: its ``whole`` rows give the rest of the model on this device.
    With ``out``, rows are merged into ``dataset_path(out, hw, name)`` next to a
    fingerprint sidecar; ``resume`` skips measurements already there with at least as many
    repeats.  ``threads`` defaults to 1 on the CPU; ``clock`` is "wall" (perf_counter) or
    "cpu" (thread CPU time, single-threaded CPU only).  ``grid`` defaults to the SearchSpace grid.
    ``runtime`` ("eager", "compiled", "onnxruntime") runs the whole-model rows (each config
    compiled or exported once per round); units are always timed eager.  ``units=False`` times no
    layer unit, and ``configs`` gives the whole models to time instead of the sampled ones (``[]``:
    none); the whole model is timed where the dense config is.
    """
    dev = resolve_device(device)
    dtype = dtype_name(dtype)
    shapes = [(*parse_resolution(r), int(b)) for r in resolutions for b in batches]
    if any(b < 1 for *_, b in shapes):
        raise ValueError(f"batch sizes must be >= 1, got {list(batches)}")
    net, name, whole = _resolve_model(model, name, call)
    arch = net.architecture
    for h, w, b in shapes:
        arch.check_fits((b, net.in_chans, h, w), fix="a smaller --resolution or --batch")
    if any(d % 2 for d in net.depths):
        raise ValueError(f"profiling times block pairs, so every stage depth must be even; got {net.depths}")
    threads = threads or (1 if dev.type == "cpu" else None)
    if clock != "wall" and (clock not in CLOCKS or dev.type != "cpu" or threads != 1):
        raise ValueError(f"clock must be 'wall', or 'cpu' on the CPU with threads=1; got {clock!r}, "
                         f"device {dev}, threads {threads}")
    check_runtime(runtime, clock)
    settings = settings or SweepSettings()
    space = search_space(net, **({} if grid is None else {"grid": grid}))
    (net if whole is None else whole).to(dev, TORCH_DTYPES[dtype]).eval()

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
        sweep = SweepPlan(net, name, dev, dtype, space, settings, seed, clock, runtime, whole, units=units,
                          configs=configs)
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
    frame.attrs["fingerprints"] = {fp["fingerprint_id"]: fp}  # as load_profiles leaves them: fit() keeps the device
    return frame


def _run(sweep: SweepPlan, groups: list, common: dict, path: Path | None, progress: bool) -> list[dict]:
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
    bar = progress_bar(total=total, enabled=progress and bool(total),
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
                                            f"{r['layer']} stage {r['stage']} s={r['sparsity']:.2f}", refresh=False)
                    stats = task.measure(acts)
                    old = best.get((g, j))
                    if old is None or stats.p10_ms < old["p10_ms"]:
                        best[g, j] = {**common, **r, **stats.profile_columns(),
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
