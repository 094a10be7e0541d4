"""Streaming task metrics: fed batch by batch, so a calibration set never sits in memory as logits.

A metric has ``reset()``, ``update(outputs, targets)``, ``compute() -> float`` (higher is
better) and a ``name``.  Outputs are logits with classes on dim 1 — ``(B, K)`` for
classification, ``(B, K, H, W)`` for segmentation — and targets the matching class ids; the
built-in metrics take a model's output as it comes (a Hugging Face ``ModelOutput``'s ``.logits``,
a tuple's first tensor: :func:`sparsevit_sdk.outputs.prediction`).
Any plain function ``fn(logits, targets) -> float`` works too (see :func:`as_metric`).

The built-in metrics are also :class:`MergeableMetric`: their state adds up over disjoint parts
of a set (counts, a confusion matrix, per-batch values summed exactly), so parts scored by
different workers merge into the score of the whole set to the last bit (see ``SplitProxy``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..outputs import prediction


@runtime_checkable
class Metric(Protocol):
    name: str

    def reset(self) -> None: ...

    def update(self, outputs: Any, targets: torch.Tensor) -> None: ...

    def compute(self) -> float: ...


@runtime_checkable
class MergeableMetric(Metric, Protocol):
    """A metric whose state, counted on disjoint parts of a set, merges exactly: what splitting
    one candidate's scoring over workers needs."""

    def state(self) -> np.ndarray:
        """What ``update()`` has counted since ``reset()``, small and picklable."""
        ...

    def merge(self, states: Sequence[np.ndarray]) -> None:
        """Add the states of other parts (in part order) to this metric's."""
        ...


def _checked(states: Sequence[np.ndarray], shape: tuple[int, ...], name: str) -> list[np.ndarray]:
    """``states`` as arrays, each of ``shape`` (a -1 means any length), or a ValueError naming the metric."""
    arrays = [np.asarray(s) for s in states]
    for a in arrays:
        if a.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, a.shape)):
            raise ValueError(f"{name}: a state of shape {a.shape} cannot merge into one of shape {shape}; merge "
                             "only states of this metric with the same settings")
    return arrays


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

    def update(self, outputs: Any, targets: torch.Tensor) -> None:
        outputs = prediction(outputs)
        if outputs.shape[1] != self.num_classes:
            raise ValueError(f"outputs have {outputs.shape[1]} classes on dim 1, metric has {self.num_classes}")
        pred = outputs.argmax(dim=1).flatten().cpu()
        true = targets.flatten().cpu()
        if self.ignore_index is not None:
            keep = true != self.ignore_index
            pred, true = pred[keep], true[keep]
        K = self.num_classes
        self.confusion += torch.bincount(true * K + pred, minlength=K * K).view(K, K)

    def state(self) -> np.ndarray:
        return self.confusion.numpy().copy()

    def merge(self, states: Sequence[np.ndarray]) -> None:
        K = self.num_classes
        for s in _checked(states, (K, K), self.name):
            self.confusion += torch.from_numpy(s.astype(np.int64))

    def chance(self, targets: torch.Tensor) -> float:
        """What always answering ``targets``' most frequent class scores: the mIoU of a model that learned
        nothing (that class's share of the pixels, averaged with an IoU of 0 for every other class present)."""
        true = targets.flatten().cpu().long()
        if self.ignore_index is not None:
            true = true[true != self.ignore_index]
        counts = torch.bincount(true, minlength=self.num_classes)
        return float(counts.max() / counts.sum() / (counts > 0).sum())

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

    def update(self, outputs: Any, targets: torch.Tensor) -> None:
        self.correct += int((prediction(outputs).argmax(dim=1) == targets).sum())
        self.total += targets.numel()

    def state(self) -> np.ndarray:
        return np.array([self.correct, self.total], dtype=np.int64)

    def merge(self, states: Sequence[np.ndarray]) -> None:
        for correct, total in _checked(states, (2,), self.name):
            self.correct += int(correct)
            self.total += int(total)

    def chance(self, targets: torch.Tensor) -> float:
        """What always answering ``targets``' most frequent label scores (1/K for K balanced classes): the
        accuracy of a model that learned nothing."""
        counts = torch.bincount(targets.flatten().cpu().long())
        return float(counts.max() / counts.sum())

    def compute(self) -> float:
        if not self.total:
            raise ValueError("accuracy of an empty set: update() was never called")
        return self.correct / self.total


class BatchMean:
    """A per-batch function ``fn(logits, targets) -> float``, averaged with batch-size weights; the
    function gets the model output's :func:`~sparsevit_sdk.outputs.prediction`.

    Batch values are kept (one float each) and summed exactly (``math.fsum``) at the end: the
    mean does not depend on the order batches arrive in, or on how they were split over workers.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], float], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "metric")
        self.reset()

    def reset(self) -> None:
        self.batches: list[tuple[float, int]] = []  # (value x batch size, batch size)

    def update(self, outputs: Any, targets: torch.Tensor) -> None:
        self.batches.append((float(self.fn(prediction(outputs), targets)) * len(targets), len(targets)))

    def compute(self) -> float:
        count = sum(n for _, n in self.batches)
        if not count:
            raise ValueError(f"{self.name} of an empty set: update() was never called")
        return math.fsum(w for w, _ in self.batches) / count

    def state(self) -> np.ndarray:
        return np.array(self.batches, dtype=np.float64).reshape(-1, 2)

    def merge(self, states: Sequence[np.ndarray]) -> None:
        for s in _checked(states, (-1, 2), self.name):
            self.batches += [(float(w), int(n)) for w, n in s]


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
