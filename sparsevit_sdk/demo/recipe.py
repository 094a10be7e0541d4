"""The demo supernet recipe: one definition that the example and the benchmarks all train.

    net = train_demo_supernet(DemoRecipe(), cache_dir="~/.cache/sparsevit_sdk")
    net.dense, net.adapted                 # dense-trained and sparsity-adapted DemoSegmenters
    net.recipe.loader("test", 64)          # canvases drawn the way the model was trained

Training is dense, from random weights: first on small canvases (``pretrain_size``), then
on the task's canvases (``size``); then a copy is adapted to every sparsity (:func:`adapt`).
Each dense phase runs in cosine cycles of ``cycle_steps`` and stops once val mIoU rose less
than ``plateau`` (relative) over the last fifth of its steps: a model still learning the task
would make every sparse config look worse than the method is (measured: 3x the steps lifted
the old fixed recipe's dense test mIoU from 0.44 to 0.65).
The small canvases are what make the task learnable in CPU minutes: with the same digits on
a quarter of the pixels a step costs a quarter as much and carries four times the digit
pixels, and digit identity is learned where full-size canvases alone made no progress in
the same time (measured: val mIoU 0.58 on 112 px canvases after 800 steps; 0.12 after 300
steps on 224 px canvases, i.e. background and digit outlines only).

With a ``cache_dir`` both state dicts are kept on disk, keyed by the recipe (the dense one
by its dense part alone, so recipes that differ only in the adaptation share it); loading
uses ``torch.load(weights_only=True)``, never a pickle.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from .._atomic import atomic_write, write_json
from ..accuracy.adapt import TrainLog, adapt, finetune
from ..accuracy.distill import Distillation
from ..accuracy.metrics import MeanIoU
from ..accuracy.proxy import AccuracyProxy
from ..profiler.timing import num_threads
from ..sparse.convert import search_space, set_window_score
from ..sparse.windows import WindowScore
from .digits import NUM_CLASSES, DemoSegmenter, build_demo_model, demo_loader, segmentation_loss
from .textures import NUM_TEXTURES, texture_loader

logger = logging.getLogger(__name__)

Task = Literal["digits", "textures"]
TASKS: tuple[Task, ...] = ("digits", "textures")  # .demo's DigitCanvases, .textures' TextureScenes
# Fields that decide the dense-trained weights; the rest only change the adaptation.
_DENSE_FIELDS = ("task", "backbone", "size", "pretrain_size", "cell", "digit_px", "digits_per_image", "batch_size",
                 "pretrain_steps", "pretrain_lr", "finetune_steps", "finetune_lr", "cycle_steps", "plateau",
                 "val_images", "seed")


@dataclass(frozen=True)
class DemoRecipe:
    """How the demo supernet is trained: canvases, steps, learning rates, sandwich rule, seed.

    Canvases are ``size`` px (``pretrain_size`` px for the first dense steps) with digits of
    ``digit_px`` px, one per ``cell``-px grid cell.  ``pretrain_steps`` and ``finetune_steps``
    cap the two dense phases; with ``cycle_steps = (c1, c2)`` each phase trains in cosine
    cycles of that many steps and stops when val mIoU (``val_images`` canvases of the phase's
    size) rose less than ``plateau`` over its last fifth of steps; ``None`` runs exactly the
    capped steps.  ``task`` is the built-in task: ``"digits"`` (:class:`DigitCanvases`, mostly background;
    the digit fields apply) or ``"textures"`` (:class:`TextureScenes`, where no window is empty).
    ``distill`` is the adaptation's :class:`Distillation` setting (``None``: labels only);
    ``window_score`` how the models rank windows (``"norm"``, SparseViT's, or ``"deviation"``).
    ``threads`` pins torch's intra-op threads while training (1 is fastest on a shared
    2-core machine; None leaves torch's setting alone).
    """

    task: Task = "digits"
    backbone: str = "swin_micro"
    size: int = 224
    pretrain_size: int = 112
    cell: int = 56
    digit_px: tuple[int, int] = (32, 48)
    digits_per_image: tuple[int, int] = (1, 4)
    batch_size: int = 8
    pretrain_steps: int = 8000
    finetune_steps: int = 3000
    cycle_steps: tuple[int, int] | None = (400, 200)
    plateau: float = 0.01
    val_images: int = 64
    adapt_steps: int = 600
    pretrain_lr: float = 1e-3
    finetune_lr: float = 5e-4
    adapt_lr: float = 5e-4
    sandwich: bool = False
    distill: Distillation | None = Distillation()
    window_score: WindowScore = "deviation"  # norm scoring pruned the digit windows first here: RESULTS.md
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")

    @property
    def num_classes(self) -> int:
        """Classes of the task's masks: what the model's head predicts and mIoU averages over."""
        return NUM_CLASSES if self.task == "digits" else NUM_TEXTURES

    @classmethod
    def quick(cls, **overrides) -> DemoRecipe:
        """A smoke-test recipe (about a minute on a 2-core CPU): too short to learn much."""
        return cls(**{"batch_size": 4, "pretrain_steps": 100, "finetune_steps": 20, "cycle_steps": None,
                      "adapt_steps": 40, **overrides})

    def canvas(self) -> dict:
        """Keyword arguments of the task's dataset (:class:`DigitCanvases`, :class:`TextureScenes`) for this recipe's
        images."""
        if self.task == "textures":
            return dict(size=self.size)
        return dict(size=self.size, cell=self.cell, digit_px=self.digit_px, digits_per_image=self.digits_per_image)

    def loader(self, split: str, num_images: int, *, batch_size: int | None = None,
               size: int | None = None, seed: int | None = None) -> torch.utils.data.DataLoader:
        """The task's images of ``split`` drawn like the training ones (optionally on a larger ``size``)."""
        canvas = {**self.canvas(), **({"size": size} if size is not None else {})}
        make = demo_loader if self.task == "digits" else texture_loader
        return make(split, num_images, batch_size=batch_size or self.batch_size,
                    seed=self.seed if seed is None else seed, **canvas)

    def key(self, *, dense_only: bool = False) -> str:
        """A short hash of the recipe (or of its dense part): the cache file name."""
        fields = dataclasses.asdict(self)  # a Distillation becomes a dict of its fields
        fields.pop("threads")  # changes the speed of training, not its result
        if dense_only:
            fields = {k: fields[k] for k in _DENSE_FIELDS}
        if fields["task"] == "digits":
            del fields["task"]  # the keys of digit recipes cached before there were tasks still hold
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class DemoSupernet:
    """The dense-trained model, its adapted copy, and their training logs (None when loaded from cache;
    ``dense_log`` holds the pre-training steps followed by the fine-tuning steps).  ``dense_curve``
    is how the dense model got there, kept beside its cache: one :class:`CurvePoint` per cycle."""

    recipe: DemoRecipe
    dense: DemoSegmenter
    adapted: DemoSegmenter
    dense_log: TrainLog | None = None
    adapt_log: TrainLog | None = None
    dense_curve: list[CurvePoint] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class CurvePoint:
    """Val mIoU of the dense model after ``step`` steps of a phase at ``size`` px, ``wall_s`` into training."""

    size: int
    step: int
    val_miou: float
    wall_s: float


def plateaued(curve: list[tuple[int, float]], tolerance: float) -> bool:
    """True once the metric rose less than ``tolerance`` (relative) over the last fifth of the steps.

    ``curve`` is ``(step, metric)`` after each cycle; at least five points are needed, so the
    last fifth is measured between two of them, not guessed.
    """
    if len(curve) < 5:
        return False
    last_step, last = curve[-1]
    before = max(v for s, v in curve if s <= 0.8 * last_step)  # the best of the first four fifths
    return last < before * (1 + tolerance)


def _cached(path: Path | None, model: DemoSegmenter) -> bool:
    """Load ``model``'s weights from ``path`` when that file exists and holds them.

    A cache is only a shortcut: a truncated or foreign file is logged and reported as a
    miss, so the weights are trained again and the file rewritten.  Shapes are compared
    before anything is copied, so ``model`` is untouched on a miss.
    """
    if path is None or not path.is_file():
        return False
    try:
        state = torch.load(path, weights_only=True)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if not isinstance(state, dict) or {k: tuple(getattr(v, "shape", ())) for k, v in state.items()} != expected:
            raise ValueError("it holds other weights than this recipe's model")
        model.load_state_dict(state)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as err:
        logger.warning("%s: unreadable supernet cache (%s: %s); training again and rewriting it",
                       path, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return False
    logger.info("loaded %s", path)
    return True


def _store(path: Path | None, model: DemoSegmenter) -> None:
    if path is not None:
        atomic_write(path, lambda tmp: torch.save(model.state_dict(), tmp))  # concurrent runs never see half a file


def _curve_path(path: Path | None) -> Path | None:
    return path.with_suffix(".json") if path is not None else None


def _load_curve(path: Path | None) -> list[CurvePoint]:
    """The dense training curve stored beside a cached model; empty when missing or unreadable."""
    if path is None or not path.is_file():
        return []
    try:
        return [CurvePoint(**c) for c in json.loads(path.read_text())["curve"]]
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("%s: unreadable training curve; ignored", path)
        return []


def _train_dense(recipe: DemoRecipe, model: DemoSegmenter, progress: bool) -> tuple[TrainLog, list[CurvePoint]]:
    """Both dense phases; each to its step cap, or cycle by cycle until val mIoU plateaus."""
    log, curve, start = TrainLog(), [], time.perf_counter()
    phases = ((recipe.pretrain_size, recipe.pretrain_steps, recipe.pretrain_lr),
              (recipe.size, recipe.finetune_steps, recipe.finetune_lr))
    for phase, (size, cap, lr) in enumerate(phases):
        if not cap:
            continue
        cycle = recipe.cycle_steps[phase] if recipe.cycle_steps else cap
        loader = recipe.loader("train", 1_000_000, size=size)  # one loader: each cycle continues its shuffle
        val = AccuracyProxy(model, recipe.loader("val", recipe.val_images, size=size),
                            metric=MeanIoU(recipe.num_classes))
        points: list[tuple[int, float]] = []
        while (done := len(points) * cycle) < cap:
            part = finetune(model, loader, segmentation_loss, min(cycle, cap - done), lr=lr,
                            seed=recipe.seed + len(points), progress=progress)
            log.extend(part)
            val.cache_clear()
            points.append((done + len(part.losses), val(search_space(model).dense())))
            curve.append(CurvePoint(size, points[-1][0], points[-1][1], time.perf_counter() - start))
            logger.info("dense phase at %d px: step %d, val mIoU %.4f", size, *points[-1])
            if recipe.cycle_steps and plateaued(points, recipe.plateau):
                break
    log.wall_s = time.perf_counter() - start
    return log, curve


def train_demo_supernet(recipe: DemoRecipe | None = None, *, cache_dir: str | os.PathLike | None = None,
                        progress: bool = True) -> DemoSupernet:
    """Train (or load from ``cache_dir``) the demo model dense, then adapt a copy to every sparsity.

    The dense phase trains on split ``"train"`` with the recipe's seed; the adaptation
    draws its batches with ``seed + 1`` so it sees canvases the dense phase did not.
    ``pretrain_steps=0`` skips pre-training on small canvases; ``adapt_steps=0`` the adaptation
    (``adapted`` is then a copy of ``dense``).
    Both models come back in eval mode at sparsity 0.
    """
    recipe = recipe or DemoRecipe()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    dense_path = cache / f"demo_dense_{recipe.key(dense_only=True)}.pt" if cache else None
    adapted_path = cache / f"demo_adapted_{recipe.key()}.pt" if cache else None
    dense = set_window_score(build_demo_model(recipe.backbone, num_classes=recipe.num_classes, seed=recipe.seed),
                             recipe.window_score)
    dense_log = adapt_log = None
    curve = _load_curve(_curve_path(dense_path))
    with num_threads(recipe.threads):
        if not _cached(dense_path, dense):
            dense_log, curve = _train_dense(recipe, dense, progress)
            if dense_path is not None:
                write_json(_curve_path(dense_path), {"curve": [dataclasses.asdict(c) for c in curve]}, indent=1)
            _store(dense_path, dense)
        adapted = copy.deepcopy(dense)
        if recipe.adapt_steps and not _cached(adapted_path, adapted):
            adapt_log = adapt(adapted, recipe.loader("train", 1_000_000, seed=recipe.seed + 1), segmentation_loss,
                              recipe.adapt_steps, sandwich=recipe.sandwich, distill=recipe.distill,
                              lr=recipe.adapt_lr, seed=recipe.seed, progress=progress)
            _store(adapted_path, adapted)
    return DemoSupernet(recipe, dense.eval(), adapted.eval(), dense_log, adapt_log, curve)
