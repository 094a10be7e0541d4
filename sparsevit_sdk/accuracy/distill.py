"""Distillation from the dense model: the sparse forward learns the dense forward's outputs.

A skipped window changes what every later layer sees; the dense model's own outputs say
what the sparse model should still produce there, in more detail than a label does (a
per-pixel class distribution, not one class id).  The teacher is one of:

- ``"in-place"``: the same weights at sparsity 0, run under ``no_grad`` (once-for-all / BigNAS
  style, no copy of the model): :func:`adapt`'s default, where the dense config keeps training;
- ``"frozen"``: a copy of the model at sparsity 0 taken when training starts: :func:`finetune`'s
  default, since training one sparse config alone lets the in-place teacher drift (measured on the
  demo: its dense test mIoU fell 0.870 -> 0.809 in 300 steps, and the pick gained 1.5 points of mIoU
  with the frozen teacher instead; "Accuracy kept: where it is lost" in benchmarks/RESULTS.md);
- any model called like the student (e.g. the original dense model).  A model holding tensors of
  the student (``sparsify(model)`` shares every weight with ``model``) would train along with it,
  so it is deep-copied once (:func:`separate_teacher`); the student itself is refused.

The term is chosen by what an output is, read from its structure:

- a tensor returned by the model, ``logits`` of a Hugging Face output: class logits on dim 1
  (``(B, K)`` or per pixel ``(B, K, H, W)``, K >= 2) -> KL(teacher || student) of the tempered softmax,
  times T².  Other shapes are refused: a ``(B,)`` or ``(B, 1)`` output is a regression or one binary
  logit (Hugging Face's ``num_labels=1`` is regression), whose softmax is constant, and a 3-D tensor
  could be ``(B, K, L)`` logits or ``(B, L, D)`` tokens;
- Mask2Former's ``class_queries_logits`` ``(B, Q, K+1)``: the same KL over the last dim;
- Mask2Former's ``masks_queries_logits``: per-pixel mask logits -> KL of the tempered Bernoulli;
- a list or tuple of tensors (a backbone's stage maps), ``feature_maps``, ``last_hidden_state``:
  feature maps -> MSE normalised by the teacher's energy, per image, so every stage weighs the same.

Every term is 0 when student and teacher agree; the terms of one output are averaged.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

Outputs = torch.Tensor | Sequence | Mapping
Teacher = Literal["in-place", "frozen"]
TEACHERS: tuple[Teacher, ...] = ("in-place", "frozen")
# Outside this range the term degenerates: T² · KL -> 0 as T -> 0 (1e-30 gives exactly 0 in fp32), and
# for a large T every softmax is near-uniform, its KL lost in fp32 rounding.
TEMPERATURE_RANGE = (0.1, 100.0)


@dataclass(frozen=True)
class Distillation:
    """How the sparse forward is distilled from the dense one.

    ``weight`` scales the distillation term against the label loss; ``temperature`` softens
    class distributions (T > 1 passes on more of the teacher's ranking of wrong classes; on the
    demo T = 2 lost 16 points of mIoU to T = 1); ``teacher`` is ``"in-place"``, ``"frozen"`` or a
    model (see the module doc).
    """

    weight: float = 1.0
    temperature: float = 1.0
    teacher: nn.Module | Teacher = "in-place"

    def __post_init__(self) -> None:
        def real(value: object) -> bool:
            return isinstance(value, numbers.Real) and not isinstance(value, bool)

        if not (real(self.weight) and 0 < self.weight < math.inf):  # NaN fails every comparison
            raise ValueError(f"Distillation weight must be a finite number > 0, got {self.weight!r} "
                             "(distill=None turns distillation off)")
        low, high = TEMPERATURE_RANGE
        if not (real(self.temperature) and low <= self.temperature <= high):
            raise ValueError(f"Distillation temperature must be a number in [{low}, {high}], got {self.temperature!r}")
        if not isinstance(self.teacher, nn.Module) and self.teacher not in TEACHERS:
            raise TypeError(f"Distillation teacher must be {' or '.join(map(repr, TEACHERS))} or an nn.Module, "
                            f"got {self.teacher!r}")

    @classmethod
    def coerce(cls, value: Distillation | bool | float | None, teacher: Teacher = "in-place") -> Distillation | None:
        """The ``distill=`` keyword as a setting: None/False off, True the defaults, a number the weight;
        ``teacher`` is the loop's default teacher for those two."""
        if value is None or value is False:
            return None
        if value is True:
            return cls(teacher=teacher)
        if isinstance(value, cls):
            return value
        if isinstance(value, numbers.Real):
            return cls(weight=float(value), teacher=teacher)
        raise TypeError(f"distill must be True/False, a weight (float) or a Distillation, got {type(value).__name__}")


def separate_teacher(teacher: nn.Module, student: nn.Module) -> nn.Module:
    """``teacher`` in eval mode, deep-copied (frozen) when it holds any tensor of ``student``.

    A teacher sharing the student's weights would move with every step and its ``eval()`` would
    switch the shared modules of the student out of training; the copy keeps the teacher as it is
    now and the user's call working (``Distillation(teacher=model)`` after ``sparsify(model)``, as
    documented), at the cost of one copy of the model, as the ``"frozen"`` teacher.
    """
    if teacher is student:
        raise ValueError(
            "the Distillation teacher is the student itself: its term would be ~0 and its eval() would stop the "
            "student's training mode; pass teacher='in-place' (the same weights at sparsity 0) or 'frozen' (a copy "
            "at sparsity 0), or another model"
        )
    shared = shared_tensors(teacher, student)
    if shared:
        logger.info("the distillation teacher shares %d tensors with the student (first %r): training on a frozen "
                    "copy of it", len(shared), shared[0])
        teacher = copy.deepcopy(teacher).requires_grad_(False)
    return teacher.eval()


def shared_tensors(module: nn.Module, other: nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``module`` whose memory ``other`` also holds (views included)."""
    def tensors(m: nn.Module):
        return ((name, t) for name, t in itertools.chain(m.named_parameters(), m.named_buffers()) if t.numel())

    def key(t: torch.Tensor) -> tuple[torch.device, int]:
        return t.device, t.untyped_storage().data_ptr()

    held = {key(t) for _, t in tensors(other)}
    return [name for name, t in tensors(module) if key(t) in held]


def logits_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`class_kl` of class logits ``(B, K)`` or ``(B, K, H, W)``; any other shape is refused (module doc)."""
    if student.ndim not in (2, 4) or student.shape[1] < 2:
        raise ValueError(
            f"cannot distill an output of shape {tuple(student.shape)}: distillation reads class logits (B, K) or "
            "(B, K, H, W) with K >= 2 classes, a list of feature maps, or a Hugging Face ModelOutput; for a "
            "regression, a single binary logit or tokens, pass distill=None and add your own term computed from "
            "SparsityAdapter.teacher_outputs(...) to the loss"
        )
    return class_kl(student, teacher, temperature)


def class_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float, dim: int = 1) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) || softmax(student/T)) over ``dim``, averaged over every other position."""
    kl = F.kl_div(F.log_softmax(student.float() / temperature, dim), F.log_softmax(teacher.float() / temperature, dim),
                  log_target=True, reduction="none").sum(dim)
    return kl.mean() * temperature**2


def mask_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL of per-pixel Bernoulli distributions sigmoid(logit/T): a mask logit is a two-class logit."""
    s, t = student.float() / temperature, teacher.float() / temperature
    p = torch.sigmoid(t)
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean() * temperature**2


def feature_nmse(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per image ``|s - t|² / |t|²``, averaged: scale-free, so a stage of large activations does not dominate."""
    s, t = student.float().flatten(1), teacher.float().flatten(1)
    return ((s - t).square().sum(1) / t.square().sum(1).clamp_min(1e-12)).mean()


Term = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
# Named outputs of Hugging Face models, and the term each one gets.
NAMED_TERMS: dict[str, Term] = {
    "logits": logits_kl,
    "class_queries_logits": lambda s, t, T: class_kl(s, t, T, dim=-1),
    "masks_queries_logits": mask_kl,
    "feature_maps": feature_nmse,
    "last_hidden_state": feature_nmse,
}


def _mismatch(where: str, student: object, teacher: object) -> ValueError:
    return ValueError(
        f"teacher and student outputs differ in structure at {where}: student {_describe(student)}, "
        f"teacher {_describe(teacher)}; a frozen teacher must be the same architecture called the same way "
        "(or use the default in-place teacher)"
    )


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"{type(value).__name__} with keys {sorted(value)}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def _pair(student: torch.Tensor, teacher: object, where: str, term: Term, temperature: float) -> torch.Tensor:
    if not isinstance(teacher, torch.Tensor) or teacher.shape != student.shape:
        raise _mismatch(where, student, teacher)
    return term(student, teacher.detach(), temperature)


def _maps(student: Sequence, teacher: object, where: str, term: Term, temperature: float) -> list[torch.Tensor]:
    if not isinstance(teacher, (list, tuple)) or len(teacher) != len(student):
        raise _mismatch(where, student, teacher)
    if not all(isinstance(s, torch.Tensor) for s in student):
        raise TypeError(f"{where} holds {[_describe(s) for s in student]}; distillation reads tensors only")
    return [_pair(s, t, f"{where}[{i}]", term, temperature) for i, (s, t) in enumerate(zip(student, teacher))]


def distillation_loss(student: Outputs, teacher: Outputs, temperature: float = 1.0) -> torch.Tensor:
    """The distillation term between a sparse forward's outputs and the dense forward's (see the module doc)."""
    if isinstance(student, torch.Tensor):
        return _pair(student, teacher, "the output", logits_kl, temperature)
    if isinstance(student, Mapping):
        if not isinstance(teacher, Mapping):
            raise _mismatch("the output", student, teacher)
        terms = []
        for key, term in NAMED_TERMS.items():
            value = student.get(key)
            if value is None:
                continue
            if teacher.get(key) is None:
                raise _mismatch(f"{key!r}", value, teacher.get(key))
            if isinstance(value, torch.Tensor):
                terms.append(_pair(value, teacher[key], repr(key), term, temperature))
            else:
                terms += _maps(value, teacher[key], repr(key), term, temperature)
        if not terms:
            raise TypeError(
                f"no output to distill in {type(student).__name__} (keys {sorted(student)}); distillation reads "
                f"{', '.join(NAMED_TERMS)} (return one of them, or train without distill)"
            )
        return torch.stack(terms).mean()
    if isinstance(student, (list, tuple)):
        return torch.stack(_maps(student, teacher, "the output", feature_nmse, temperature)).mean()
    raise TypeError(f"cannot distill a model output of type {type(student).__name__}; distillation reads a tensor "
                    "of logits, a list of feature maps or a Hugging Face ModelOutput")
