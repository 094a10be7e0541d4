"""The demo supernet recipe: one definition that the example and the benchmarks all train.

    net = train_demo_supernet(DemoRecipe(), cache_dir="~/.cache/sparsevit_sdk")
    net.dense, net.adapted                 # dense-trained and sparsity-adapted DemoSegmenters
    net.recipe.loader("test", 64)          # canvases drawn the way the model was trained

Training is dense, from random weights: first on small canvases (``pretrain_size``), then
on the task's canvases (``size``); then a copy is adapted to every sparsity (:func:`adapt`).
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
from dataclasses import dataclass
from pathlib import Path

import torch

from .._atomic import atomic_write
from ..profiler.timing import num_threads
from .adapt import TrainLog, adapt, finetune
from .demo import DemoSegmenter, build_demo_model, demo_loader, segmentation_loss

logger = logging.getLogger(__name__)

# Fields that decide the dense-trained weights; the rest only change the adaptation.
_DENSE_FIELDS = ("backbone", "size", "pretrain_size", "cell", "digit_px", "digits_per_image", "batch_size",
                 "pretrain_steps", "pretrain_lr", "finetune_steps", "finetune_lr", "seed")


@dataclass(frozen=True)
class DemoRecipe:
    """How the demo supernet is trained: canvases, steps, learning rates, sandwich rule, seed.

    Canvases are ``size`` px (``pretrain_size`` px for the first dense steps) with digits of
    ``digit_px`` px, one per ``cell``-px grid cell.
    ``threads`` pins torch's intra-op threads while training (1 is fastest on a shared
    2-core machine; None leaves torch's setting alone).
    """

    backbone: str = "swin_micro"
    size: int = 224
    pretrain_size: int = 112
    cell: int = 56
    digit_px: tuple[int, int] = (32, 48)
    digits_per_image: tuple[int, int] = (1, 4)
    batch_size: int = 8
    pretrain_steps: int = 800
    finetune_steps: int = 100
    adapt_steps: int = 200
    pretrain_lr: float = 1e-3
    finetune_lr: float = 5e-4
    adapt_lr: float = 5e-4
    sandwich: bool = False
    seed: int = 0
    threads: int | None = 1

    @classmethod
    def quick(cls, **overrides) -> DemoRecipe:
        """A smoke-test recipe (about a minute on a 2-core CPU): too short to learn much."""
        return cls(**{"batch_size": 4, "pretrain_steps": 100, "finetune_steps": 20, "adapt_steps": 40, **overrides})

    def canvas(self) -> dict:
        """Keyword arguments of :class:`DigitCanvases` for this recipe's canvases."""
        return dict(size=self.size, cell=self.cell, digit_px=self.digit_px, digits_per_image=self.digits_per_image)

    def loader(self, split: str, num_images: int, *, batch_size: int | None = None,
               size: int | None = None, seed: int | None = None) -> torch.utils.data.DataLoader:
        """Demo canvases of ``split`` drawn like the training ones (optionally on a larger ``size``)."""
        canvas = {**self.canvas(), **({"size": size} if size is not None else {})}
        return demo_loader(split, num_images, batch_size=batch_size or self.batch_size,
                           seed=self.seed if seed is None else seed, **canvas)

    def key(self, *, dense_only: bool = False) -> str:
        """A short hash of the recipe (or of its dense part): the cache file name."""
        fields = dataclasses.asdict(self)
        fields.pop("threads")  # changes the speed of training, not its result
        if dense_only:
            fields = {k: fields[k] for k in _DENSE_FIELDS}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class DemoSupernet:
    """The dense-trained model, its adapted copy, and their training logs (None when loaded from cache;
    ``dense_log`` holds the pre-training steps followed by the fine-tuning steps)."""

    recipe: DemoRecipe
    dense: DemoSegmenter
    adapted: DemoSegmenter
    dense_log: TrainLog | None = None
    adapt_log: TrainLog | None = None


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


def train_demo_supernet(recipe: DemoRecipe | None = None, *, cache_dir: str | os.PathLike | None = None,
                        progress: bool = True) -> DemoSupernet:
    """Train (or load from ``cache_dir``) the demo model dense, then adapt a copy to every sparsity.

    The dense phase trains on split ``"train"`` with the recipe's seed; the adaptation
    draws its batches with ``seed + 1`` so it sees canvases the dense phase did not.
    ``pretrain_steps=0`` skips pre-training on small canvases.
    Both models come back in eval mode at sparsity 0.
    """
    recipe = recipe or DemoRecipe()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    dense_path = cache / f"demo_dense_{recipe.key(dense_only=True)}.pt" if cache else None
    adapted_path = cache / f"demo_adapted_{recipe.key()}.pt" if cache else None
    dense = build_demo_model(recipe.backbone, seed=recipe.seed)
    dense_log = adapt_log = None
    with num_threads(recipe.threads):
        if not _cached(dense_path, dense):
            dense_log = TrainLog()
            for size, steps, lr in ((recipe.pretrain_size, recipe.pretrain_steps, recipe.pretrain_lr),
                                    (recipe.size, recipe.finetune_steps, recipe.finetune_lr)):
                if steps:
                    log = finetune(dense, recipe.loader("train", 1_000_000, size=size), segmentation_loss, steps,
                                   lr=lr, seed=recipe.seed, progress=progress)
                    dense_log.configs += log.configs
                    dense_log.losses += log.losses
                    dense_log.wall_s += log.wall_s
            _store(dense_path, dense)
        adapted = copy.deepcopy(dense)
        if not _cached(adapted_path, adapted):
            adapt_log = adapt(adapted, recipe.loader("train", 1_000_000, seed=recipe.seed + 1), segmentation_loss,
                              recipe.adapt_steps, sandwich=recipe.sandwich, lr=recipe.adapt_lr, seed=recipe.seed,
                              progress=progress)
            _store(adapted_path, adapted)
    return DemoSupernet(recipe, dense.eval(), adapted.eval(), dense_log, adapt_log)
