"""Sparsity-aware adaptation: train one supernet that works at every sparsity config.

SparseViT fine-tunes the model with a fresh layerwise sparsity at every step, so that
afterwards any config can be scored without retraining (the accuracy proxy then only
runs inference).  :func:`adapt` draws each step's config from the search space
(uniform per knob, repaired to the within-stage order), optionally adding the dense and
the sparsest config to the same step (the *sandwich rule* of slimmable / once-for-all
networks).  :func:`finetune` is the same loop at one fixed config, e.g. dense training.

Batches are ``(inputs, targets)``; ``loss_fn(model(inputs), targets)`` must return a
scalar tensor.  Runs are deterministic under ``seed`` (config draws use a numpy
Generator, torch randomness a forked, seeded RNG) given a deterministic loader.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..config import SearchSpace, SparsityConfig
from ..sparse.convert import set_sparsity
from .state import check_config, preserved

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrainLog:
    """What a training run did: the configs run at every step and the mean loss of each step."""

    configs: list[tuple[SparsityConfig, ...]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0


def _cycle(loader: Iterable[Batch]) -> Iterator[Batch]:
    """Batches forever, epoch after epoch; a loader with no batch is an error, not a hang."""
    for epoch in itertools.count():
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            where = "" if epoch == 0 else f" in epoch {epoch}"
            raise ValueError(
                f"the loader yielded no batches{where}; pass a loader over at least one "
                "(inputs, targets) batch (check dataset length and drop_last)"
            )


def _cosine(steps: int, warmup: int) -> Callable[[int], float]:
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
    return factor


def _train(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn,
    steps: int,
    pick: Callable[[int], tuple[SparsityConfig, ...]],
    *,
    lr: float,
    weight_decay: float,
    warmup: float,
    max_grad_norm: float | None,
    seed: int,
    progress: bool,
    desc: str,
) -> TrainLog:
    """Shared loop: each step runs every config ``pick(step)`` returns, summing their gradients."""
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(steps, int(warmup * steps)))
    log = TrainLog()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), preserved(model, training=True):
        torch.manual_seed(seed)
        batches = _cycle(loader)
        bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True)
        for step in bar:
            inputs, targets = next(batches)
            inputs, targets = inputs.to(device), targets.to(device)
            configs = pick(step)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for cfg in configs:
                set_sparsity(model, cfg)
                loss = loss_fn(model(inputs), targets)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step} with config {cfg}; lower lr")
                loss.backward()
                total += loss.item()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            schedule.step()
            log.configs.append(configs)
            log.losses.append(total / len(configs))
            bar.set_postfix(loss=f"{log.losses[-1]:.4f}", refresh=False)
    log.wall_s = time.perf_counter() - start
    logger.info("%s: %d steps in %.1f s, final loss %.4f", desc, steps, log.wall_s, log.losses[-1])
    return log


def finetune(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn,
    steps: int,
    *,
    config: SparsityConfig | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    warmup: float = 0.05,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> TrainLog:
    """Train ``model`` in place for ``steps`` AdamW steps at one config (dense by default).

    ``warmup`` is the fraction of steps with a linear LR warm-up before cosine decay.
    The model's sparsity and train/eval mode are restored afterwards.
    """
    config = config if config is not None else SearchSpace.from_model(model).dense()
    check_config(model, config)
    return _train(
        model, loader, loss_fn, steps, lambda step: (config,), lr=lr, weight_decay=weight_decay,
        warmup=warmup, max_grad_norm=max_grad_norm, seed=seed, progress=progress, desc="finetune",
    )


def adapt(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn,
    steps: int,
    *,
    space: SearchSpace | None = None,
    sandwich: bool = False,
    lr: float = 5e-4,
    weight_decay: float = 0.05,
    warmup: float = 0.05,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> TrainLog:
    """Sparsity-aware adaptation of ``model`` in place: a random config at every step.

    Each step draws one config from ``space`` (default ``SearchSpace.from_model(model)``)
    uniformly per knob, repaired to the within-stage order.  With ``sandwich=True`` the
    step also runs ``space.dense()`` and ``space.sparsest()`` and sums the three
    gradients (about 2-3x the cost of a step).  Returns the :class:`TrainLog`; the
    model's sparsity and mode are restored afterwards.
    """
    space = space if space is not None else SearchSpace.from_model(model)
    check_config(model, space.dense())
    rng = np.random.default_rng(seed)
    bounds = (space.dense(), space.sparsest()) if sandwich else ()

    def pick(step: int) -> tuple[SparsityConfig, ...]:
        return (*bounds, space.sample(rng))

    return _train(
        model, loader, loss_fn, steps, pick, lr=lr, weight_decay=weight_decay, warmup=warmup,
        max_grad_norm=max_grad_norm, seed=seed, progress=progress, desc="adapt" + " (sandwich)" * sandwich,
    )
