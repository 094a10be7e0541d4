"""Sparsity-aware adaptation inside ``transformers.Trainer`` (needs ``pip install '.[transformers]'``).

A callback can change the model between steps but not the loss, so there are two ways in:

- :class:`SparsityCallback`: any ``Trainer`` (yours, subclassed or not) trains at a fresh random
  config every optimiser step; between steps (evaluation, checkpoints) the model runs at the
  sparsity it had before training.
- :class:`SparsityTrainer`: a ``Trainer`` that does the same and adds the distillation term to
  the loss the ``Trainer`` already computes, whether the model computes it itself
  (``labels=``, Mask2Former's ``mask_labels=``/``class_labels=``) or ``compute_loss_func`` does::

      trainer = SparsityTrainer(model=sparsify(model), args=args, train_dataset=train, distill=True)
      trainer.train()
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from transformers import Trainer, TrainerCallback

from ..config import SearchSpace
from .adapter import SparsityAdapter
from .distill import Distillation


class SparsityCallback(TrainerCallback):
    """Before each optimiser step, apply a fresh random config; after it, put the model's sparsity back.

    ``model`` is the sparsified model the ``Trainer`` trains (or a :class:`SparsityAdapter` of it).
    """

    def __init__(self, model: nn.Module | SparsityAdapter, *, space: SearchSpace | None = None, seed: int = 0) -> None:
        self.adapter = model if isinstance(model, SparsityAdapter) else SparsityAdapter(model, space=space, seed=seed)

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self.adapter.step()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.adapter.restore()  # evaluation and checkpoints between steps see the model as it was

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self.adapter.restore()


class SparsityTrainer(Trainer):
    """``transformers.Trainer`` with sparsity-aware adaptation and distillation from the dense model.

    ``distill`` (True, a weight or a :class:`Distillation`; ``None`` for configs alone) and
    ``space`` are the adaptation's settings; configs are drawn under ``args.seed``.  The loss
    is the ``Trainer``'s own, so a model that computes its loss from its labels needs nothing
    more; one that computes none needs ``compute_loss_func``.  Under gradient accumulation the
    term is scaled as the task loss is, so accumulated micro-batches give the full batch's gradient.
    Each logged ``loss`` (their sum, what is minimised) comes with ``task_loss`` and
    ``distill_loss``, its two parts over the same steps.
    """

    def __init__(self, *args: Any, distill: Distillation | bool | float | None = True,
                 space: SearchSpace | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.compute_loss_func is None and not self.label_names and not self.can_return_loss:
            raise ValueError(
                f"{type(self.model).__name__} computes no loss (its forward takes no labels argument) and no "
                "compute_loss_func was given; pass compute_loss_func=lambda outputs, labels, num_items_in_batch: ... "
                "(Trainer's own argument), or train a model whose forward takes labels"
            )
        self.adapter = SparsityAdapter(self.model, space=space, distill=distill, seed=self.args.seed)
        self.current_gradient_accumulation_steps = self.args.gradient_accumulation_steps  # train() sets it per step
        self.add_callback(SparsityCallback(self.adapter))
        self._distill_sum: torch.Tensor | float = 0.0  # the term as it entered the loss, since the last log
        self._distill_logged_at = 0  # global_step at that log

    def train(self, *args: Any, **kwargs: Any):
        """``Trainer.train``; on any exit, Ctrl-C included, the model's sparsity is put back."""
        try:
            return super().train(*args, **kwargs)
        finally:
            self.adapter.restore()

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        """The ``Trainer``'s loss at this step's config, plus the distillation term while training."""
        teacher_inputs = {k: v for k, v in inputs.items() if k not in self.label_names}  # before the Trainer pops any
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and self.adapter.distill is not None:
            term = self.adapter.distillation(outputs, **teacher_inputs)  # a mean over this micro-batch
            accumulation = self.current_gradient_accumulation_steps
            if self._loss_used_as_is(num_items_in_batch):  # else training_step divides loss and term alike
                term = term / accumulation
                self._distill_sum = self._distill_sum + term.detach()
            else:
                self._distill_sum = self._distill_sum + term.detach() / accumulation
            loss = loss + term
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """``Trainer.log``, with a training ``loss`` split into ``task_loss`` and ``distill_loss``
        (each a mean per optimiser step since the last log, as ``loss`` is)."""
        if "loss" in logs and self.adapter.distill is not None:
            steps = max(1, self.state.global_step - self._distill_logged_at)
            distill = float(self._distill_sum) / steps
            logs = {**logs, "task_loss": logs["loss"] - distill, "distill_loss": distill}
            self._distill_sum, self._distill_logged_at = 0.0, self.state.global_step
        super().log(logs, start_time)

    def _loss_used_as_is(self, num_items_in_batch: torch.Tensor | int | None) -> bool:
        """Whether ``training_step`` takes the loss as already scaled for gradient accumulation.

        Then the task loss was normalised over the whole accumulated batch (by ``num_items_in_batch``)
        and the per-micro-batch distillation mean must be divided by the accumulation steps here; the
        rule is ``Trainer.loss_is_scaled_for_ga``'s, as its class docstring states it.
        """
        if self.loss_is_scaled_for_ga is not None:
            return self.loss_is_scaled_for_ga
        normalised = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        return bool(normalised) or self.compute_loss_func is not None
