"""Sparsity-aware adaptation: train one supernet that works at every sparsity config.

SparseViT fine-tunes the model with a fresh layerwise sparsity at every step, so that
afterwards any config can be scored without retraining (the accuracy proxy then only
runs inference).  :func:`adapt` draws each step's config from the search space
(uniform per knob, repaired to the within-stage order), optionally adding the dense and
the sparsest config to the same step (the *sandwich rule* of slimmable / once-for-all
networks).  :func:`finetune` is the same loop at one fixed config: dense training, or
SparseViT's last step, fine-tuning the config a search picked.

Both take ``distill``: the sparse forward then also learns the dense forward's outputs
(:mod:`.distill`).  With the in-place teacher a step costs one extra forward without
gradients, except under the sandwich rule, where the step's own dense run is the teacher.

Batches are ``(inputs, targets)``, scored by ``loss_fn(model(inputs), targets)``, or
mappings of keyword arguments, as Hugging Face collators make them: ``model(**batch)``,
scored by ``loss_fn(outputs, batch)`` or, with ``loss_fn=None``, by the loss the model
computes itself (``outputs.loss``).  Runs are deterministic under ``seed`` (config draws
use a numpy Generator, torch randomness a forked, seeded RNG) given a deterministic loader.
Loops that are not ours use the same parts through :class:`~.adapter.SparsityAdapter`.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .._progress import progress_bar
from ..config import SearchSpace, SparsityConfig
from ..sparse.state import check_config, preserved
from .adapter import SparsityAdapter
from .distill import Distillation

logger = logging.getLogger(__name__)

LossFn = Callable[[Any, Any], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor] | Mapping[str, Any]


@dataclass(repr=False)
class TrainLog:
    """What a training run did, step by step: the configs run, and the mean over them of the loss
    minimised (``losses``), of the task loss alone (``task_losses``) and of the weighted
    distillation term alone (``distill_losses``, 0 without distillation): ``losses`` is their sum.

    ``print(log)`` gives a header (steps, time, the model the configs are for) and a row a step,
    with the configs' ratios only (the config itself once, in the header, where every step ran it).
    """

    configs: list[tuple[SparsityConfig, ...]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    task_losses: list[float] = field(default_factory=list)
    distill_losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def record(self, configs: tuple[SparsityConfig, ...], task: float, distill: float) -> None:
        """One step: ``task`` and ``distill`` summed over its ``configs``."""
        self.configs.append(configs)
        self.task_losses.append(task / len(configs))
        self.distill_losses.append(distill / len(configs))
        self.losses.append((task + distill) / len(configs))

    def extend(self, other: TrainLog) -> None:
        """Append the steps of ``other`` (a later part of the same run)."""
        for name in ("configs", "losses", "task_losses", "distill_losses"):
            getattr(self, name).extend(getattr(other, name))
        self.wall_s += other.wall_s

    def __repr__(self) -> str:
        last = (f", final loss {self.losses[-1]:.4g} (task {self.task_losses[-1]:.4g} + distill "
                f"{self.distill_losses[-1]:.4g})") if self.losses else ""
        return f"TrainLog({len(self.losses)} steps in {self.wall_s:.1f} s{last})"

    def __str__(self) -> str:
        if not self.configs:
            return repr(self)
        first = self.configs[0][0]
        fixed = all(step == self.configs[0] for step in self.configs)
        runs = " and ".join(map(str, self.configs[0])) if fixed else "per step (ratios below)"
        lines = [f"{self!r}", f"model {first.signature} ({first.granularity} knobs); configs: {runs}",
                 f"{'step':>5} {'loss':>10} {'task':>10} {'distill':>10}" + ("" if fixed else "  configs")]
        for step, (configs, loss, task, distill) in enumerate(
                zip(self.configs, self.losses, self.task_losses, self.distill_losses)):
            ratios = "" if fixed else "  " + " ".join(map(str, configs))
            lines.append(f"{step:>5} {loss:>10.4f} {task:>10.4f} {distill:>10.4f}{ratios}")
        return "\n".join(lines)


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


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _call(batch: Batch, device: torch.device) -> tuple[tuple, dict, Any]:
    """How the model is called on ``batch``: positional args, keyword args, and what the loss reads."""
    if isinstance(batch, Mapping):
        kwargs = {k: _to(v, device) for k, v in batch.items()}
        return (), kwargs, kwargs
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        got = f"{type(batch).__name__}" + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        raise TypeError(f"a batch must be (inputs, targets) or a mapping of model keyword arguments, got {got}")
    return (_to(batch[0], device),), {}, _to(batch[1], device)


def _loss(outputs: Any, targets: Any, loss_fn: LossFn | None) -> torch.Tensor:
    if loss_fn is not None:
        return loss_fn(outputs, targets)
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if loss is None:
        raise ValueError(
            f"loss_fn is None but the model returned no loss ({type(outputs).__name__}); pass a loss_fn, or batches "
            "with the labels the model computes its loss from (e.g. labels=, mask_labels= and class_labels=)"
        )
    return loss


def _train(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn | None,
    steps: int,
    adapter: SparsityAdapter,
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
    """Shared loop: each step runs every config ``pick(step)`` returns, summing their gradients.

    With distillation each sparse run adds the adapter's term; the step's dense run, if any,
    is the in-place teacher of the runs after it (no extra forward).
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(steps, int(warmup * steps)))
    log = TrainLog()
    start = time.perf_counter()
    saved = [t.detach().clone() for t in (*model.parameters(), *model.buffers())]  # put back if training fails
    try:
        with torch.random.fork_rng(devices=[]), preserved(model, training=True):
            _steps(model, loader, loss_fn, steps, adapter, pick, optimizer, schedule, log, max_grad_norm, seed,
                   progress, desc)
    except Exception:
        with torch.no_grad():
            for tensor, before in zip((*model.parameters(), *model.buffers()), saved):
                tensor.copy_(before)
        raise
    log.wall_s = time.perf_counter() - start
    logger.info("%s: %d steps in %.1f s, final loss %.4f (task %.4f + distillation %.4f)", desc, steps, log.wall_s,
                log.losses[-1], log.task_losses[-1], log.distill_losses[-1])
    return log


WEIGHT_LIMIT = 1e4  # |weight| no trained network reaches: beyond it an update has blown up


def _non_finite(model: nn.Module, args: tuple, kwargs: dict, step: int, cfg: SparsityConfig, loss: float) -> str:
    """Why a loss is not finite: the batch's inputs, a weight the last update broke, or neither."""
    for name, value in [*((f"input {i}", a) for i, a in enumerate(args)), *kwargs.items()]:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            return (f"the batch of step {step} holds non-finite values in {name} (NaN or inf in the data): clean "
                    "the data; the model's weights were put back as they were before training")
    for name, param in model.named_parameters():  # non-finite, or so large that the forward overflows
        if not torch.isfinite(param).all() or param.detach().abs().max() > WEIGHT_LIMIT:
            return (f"parameter {name!r} became non-finite or huge (|w| up to {param.detach().abs().max().item():.3g}) "
                    f"in the update before step {step} (loss {loss}): lower lr or set max_grad_norm; the model's "
                    "weights were put back as they were before training")
    return (f"loss became {loss} at step {step} with config {cfg} from finite inputs and weights: check the loss "
            "function, or lower lr; the model's weights were put back as they were before training")


def _steps(model: nn.Module, loader: Iterable[Batch], loss_fn: LossFn | None, steps: int, adapter: SparsityAdapter,
           pick: Callable[[int], tuple[SparsityConfig, ...]], optimizer: torch.optim.Optimizer,
           schedule: torch.optim.lr_scheduler.LRScheduler, log: TrainLog, max_grad_norm: float | None, seed: int,
           progress: bool, desc: str) -> None:
    """The steps of :func:`_train`, appending to ``log``."""
    device = next(model.parameters()).device
    dense = adapter.space.dense()
    torch.manual_seed(seed)
    batches = _cycle(loader)
    bar = progress_bar(range(steps), desc=desc, enabled=progress)
    for step in bar:
        args, kwargs, targets = _call(next(batches), device)
        configs = pick(step)
        optimizer.zero_grad(set_to_none=True)
        task, distilled, teacher = 0.0, 0.0, None
        for cfg in configs:
            adapter.apply(cfg)
            outputs = model(*args, **kwargs)
            loss = _loss(outputs, targets, loss_fn)
            term = None
            if adapter.in_place and cfg == dense:
                teacher = outputs  # the dense run teaches the sparse runs after it
            elif adapter.distill is not None:
                term = adapter.distillation(outputs, *args, teacher_outputs=teacher, **kwargs)
            total = loss if term is None else loss + term
            if not torch.isfinite(total):
                raise FloatingPointError(_non_finite(model, args, kwargs, step, cfg, total.item()))
            total.backward()
            task += loss.item()
            distilled += 0.0 if term is None else term.item()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        schedule.step()
        log.record(configs, task, distilled)
        bar.set_postfix(loss=f"{log.losses[-1]:.4f}", distill=f"{log.distill_losses[-1]:.4f}", refresh=False)


def finetune(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn | None,
    steps: int,
    *,
    config: SparsityConfig | None = None,
    distill: Distillation | bool | float | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    warmup: float = 0.05,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> TrainLog:
    """Train ``model`` in place for ``steps`` AdamW steps at one config (dense by default).

    ``warmup`` is the fraction of steps with a linear LR warm-up before cosine decay.
    ``distill`` (True, a weight or a :class:`Distillation`) adds the distillation term from
    the dense forward, e.g. when fine-tuning the config a search picked; True and a weight
    use a frozen copy of the model at sparsity 0 as the teacher (the in-place one drifts when
    one sparse config trains alone: see :mod:`.distill`).
    The model's sparsity and train/eval mode are restored afterwards, also on an error or Ctrl-C.
    """
    adapter = SparsityAdapter(model, distill=distill, seed=seed, teacher="frozen")
    config = config if config is not None else adapter.space.dense()
    check_config(model, config)
    if adapter.distill is not None and config == adapter.space.dense():
        raise ValueError("distill needs a sparse config: at sparsity 0 the model would learn its own dense outputs; "
                         "pass config= (e.g. result.best)")
    return _train(
        model, loader, loss_fn, steps, adapter, lambda step: (config,), lr=lr, weight_decay=weight_decay,
        warmup=warmup, max_grad_norm=max_grad_norm, seed=seed, progress=progress,
        desc="finetune" + " (distill)" * (adapter.distill is not None),
    )


def adapt(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn | None,
    steps: int,
    *,
    space: SearchSpace | None = None,
    sandwich: bool = False,
    distill: Distillation | bool | float | None = None,
    lr: float = 5e-4,
    weight_decay: float = 0.05,
    warmup: float = 0.05,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> TrainLog:
    """Sparsity-aware adaptation of ``model`` in place: a random config at every step.

    Each step draws one config from ``space`` (default ``search_space(model)``)
    uniformly per knob, repaired to the within-stage order.  With ``sandwich=True`` the
    step also runs ``space.dense()`` and ``space.sparsest()`` and sums the three
    gradients (about 2-3x the cost of a step).  ``distill`` (True, a weight or a
    :class:`Distillation`) trains every sparse run to match the dense outputs as well as the
    labels.  Returns the :class:`TrainLog`; the model's sparsity and mode are restored
    afterwards, also on an error or Ctrl-C.
    """
    adapter = SparsityAdapter(model, space=space, distill=distill, seed=seed)
    bounds = (adapter.space.dense(), adapter.space.sparsest()) if sandwich else ()

    def pick(step: int) -> tuple[SparsityConfig, ...]:
        return (*bounds, adapter.draw())

    desc = "adapt" + " (sandwich)" * sandwich + " (distill)" * (adapter.distill is not None)
    return _train(
        model, loader, loss_fn, steps, adapter, pick, lr=lr, weight_decay=weight_decay, warmup=warmup,
        max_grad_norm=max_grad_norm, seed=seed, progress=progress, desc=desc,
    )
