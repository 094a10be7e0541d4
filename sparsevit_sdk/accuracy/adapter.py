"""Sparsity-aware adaptation as a hook for any training loop: a fresh config per step, a distillation term.

:func:`~sparsevit_sdk.accuracy.adapt` owns its loop; most users already have one (their own,
Lightning, ``transformers.Trainer``).  Two calls put adaptation into it::

    adapter = SparsityAdapter(model, distill=True)        # model: built-in or sparsify()'d
    for images, targets in loader:
        adapter.step()                                    # a random per-layer config for this step
        outputs = model(images)
        loss = loss_fn(outputs, targets) + adapter.distillation(outputs, images)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
    adapter.restore()                                     # the sparsity the model had before

``distillation(outputs, *args, **kwargs)`` runs the teacher on the same call (``args`` and
``kwargs`` are what the model was called with), so it works as well when the model computes
its own loss: ``out = model(pixel_values=x, mask_labels=m, class_labels=c)`` then
``out.loss + adapter.distillation(out, pixel_values=x)``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from ..config import SearchSpace, SparsityConfig
from ..sparse.convert import search_space, set_sparsity, sparse_backbone
from ..sparse.state import check_config, restore_sparsity
from .distill import Distillation, Outputs, Teacher, distillation_loss, separate_teacher


class SparsityAdapter:
    """Draws each step's sparsity config and prices the distillation term, for a loop it does not own.

    ``space`` defaults to ``search_space(model)``; configs are drawn uniformly per
    knob (repaired to the within-stage order) from a numpy Generator seeded with ``seed``.
    ``distill`` is ``True``, a weight, or a :class:`Distillation` (``None``/``False``: off);
    ``teacher`` is the one ``True`` or a weight get (``"in-place"`` or ``"frozen"``, a copy made here).
    Also a context manager: leaving it restores the sparsity the model had on entry.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        space: SearchSpace | None = None,
        distill: Distillation | bool | float | None = None,
        seed: int = 0,
        teacher: Teacher = "in-place",
    ) -> None:
        self.model = model
        self.backbone = sparse_backbone(model)  # a model never sparsify()'d fails here, naming the fix
        self.space = space if space is not None else search_space(model)
        check_config(model, self.space.dense())
        self.distill = Distillation.coerce(distill, teacher)
        self.teacher = self._teacher()
        self.rng = np.random.default_rng(seed)
        self.config: SparsityConfig | None = None
        self._saved = self.backbone.block_sparsity

    def _teacher(self) -> nn.Module | None:
        """The teacher module; None when there is none or it is the model itself (in place)."""
        if self.distill is None or self.distill.teacher == "in-place":
            return None
        if isinstance(self.distill.teacher, nn.Module):  # copied if it holds the student's tensors
            return separate_teacher(self.distill.teacher, self.model)
        teacher = set_sparsity(copy.deepcopy(self.model), self.space.dense())  # "frozen": the model as it is now
        return teacher.requires_grad_(False).eval()  # no dropout, running statistics left alone

    @property
    def in_place(self) -> bool:
        """True when the teacher is the model itself at sparsity 0."""
        return self.distill is not None and self.teacher is None

    def draw(self) -> SparsityConfig:
        """The next random config of the space (does not apply it)."""
        return self.space.sample(self.rng)

    def apply(self, config: SparsityConfig) -> SparsityConfig:
        set_sparsity(self.model, config)
        self.config = config
        return config

    def step(self) -> SparsityConfig:
        """Draw a fresh config and apply it: call once per training step, before the forward."""
        return self.apply(self.draw())

    def teacher_outputs(self, *args, **kwargs) -> Outputs:
        """The dense forward's outputs for the call ``model(*args, **kwargs)``, without gradients."""
        self._check_distill()
        with torch.no_grad():
            if self.teacher is not None:
                return self.teacher(*args, **kwargs)
            current = self.backbone.block_sparsity
            set_sparsity(self.model, self.space.dense())
            try:
                return self.model(*args, **kwargs)
            finally:
                restore_sparsity(self.backbone, current)

    def distillation(self, outputs: Outputs, *args, teacher_outputs: Outputs | None = None, **kwargs) -> torch.Tensor:
        """``weight`` x the distillation term of ``outputs`` against the teacher on the same call.

        ``args``/``kwargs`` repeat how the model was called (the labels may be left out);
        ``teacher_outputs`` skips the teacher's forward when they are already at hand.
        """
        self._check_distill()
        if teacher_outputs is None:
            teacher_outputs = self.teacher_outputs(*args, **kwargs)
        return self.distill.weight * distillation_loss(outputs, teacher_outputs, self.distill.temperature)

    def _check_distill(self) -> None:
        if self.distill is None:
            raise RuntimeError("this SparsityAdapter was built without distill; pass distill=True to use a teacher")

    def restore(self) -> None:
        """Put back the per-block sparsity the model had when the adapter was made."""
        restore_sparsity(self.backbone, self._saved)
        self.config = None

    def __enter__(self) -> SparsityAdapter:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()
