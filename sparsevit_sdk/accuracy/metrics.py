"""Streaming task metrics: fed batch by batch, so a calibration set never sits in memory as logits.

A metric has ``reset()``, ``update(outputs, targets)``, ``compute() -> float`` (higher is
better) and a ``name``.  Outputs are logits with classes on dim 1 — ``(B, K)`` for
classification, ``(B, K, H, W)`` for segmentation — and targets the matching class ids.
Any plain function ``fn(outputs, targets) -> float`` works too (see :func:`as_metric`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Metric(Protocol):
    name: str

    def reset(self) -> None: ...

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None: ...

    def compute(self) -> float: ...


class MeanIoU:
    """Mean intersection-over-union over classes present in the targets or the predictions.

    ``ignore_index`` pixels (e.g. unlabelled) count nowhere.
    """

    name = "mIoU"

    def __init__(self, num_classes: int, *, ignore_index: int | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"mIoU needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)  # (true, pred)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if outputs.shape[1] != self.num_classes:
            raise ValueError(f"outputs have {outputs.shape[1]} classes on dim 1, metric has {self.num_classes}")
        pred = outputs.argmax(dim=1).flatten().cpu()
        true = targets.flatten().cpu()
        if self.ignore_index is not None:
            keep = true != self.ignore_index
            pred, true = pred[keep], true[keep]
        K = self.num_classes
        self.confusion += torch.bincount(true * K + pred, minlength=K * K).view(K, K)

    def compute(self) -> float:
        c = self.confusion.double()
        inter = c.diag()
        union = c.sum(0) + c.sum(1) - inter
        present = union > 0
        if not present.any():
            raise ValueError("mIoU of an empty set: update() was never called with any pixel")
        return float((inter[present] / union[present]).mean())


class Accuracy:
    """Top-1 accuracy over every position (image or pixel)."""

    name = "accuracy"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += int((outputs.argmax(dim=1) == targets).sum())
        self.total += targets.numel()

    def compute(self) -> float:
        if not self.total:
            raise ValueError("accuracy of an empty set: update() was never called")
        return self.correct / self.total


class BatchMean:
    """A per-batch function ``fn(outputs, targets) -> float``, averaged with batch-size weights."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], float], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "metric")
        self.reset()

    def reset(self) -> None:
        self.weighted = 0.0
        self.count = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.weighted += float(self.fn(outputs, targets)) * len(targets)
        self.count += len(targets)

    def compute(self) -> float:
        if not self.count:
            raise ValueError(f"{self.name} of an empty set: update() was never called")
        return self.weighted / self.count


def as_metric(metric: Metric | Callable[[torch.Tensor, torch.Tensor], float]) -> Metric:
    """A :class:`Metric` as is; a plain function wrapped in :class:`BatchMean`."""
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return BatchMean(metric)
    raise TypeError(
        f"metric must be a Metric (reset/update/compute) or a function (outputs, targets) -> float, "
        f"got {type(metric).__name__}"
    )
