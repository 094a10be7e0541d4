"""Accuracy proxies: what a sparsity config costs in accuracy, cheaply and cached.

The search calls a proxy as ``proxy(cfg) -> float`` (higher is better) hundreds of
times.  Every proxy here runs inference only (on a supernet from :func:`adapt`), caches
its score by config and window score, and leaves the model as it found it (see
``sparse/state.py``).  Scores are of the weights the proxy first saw: once the weights
change (trained, loaded, moved to another device or dtype) a proxy that holds scores or dense
outputs of the old ones refuses to answer until ``cache_clear()``.

- :class:`AccuracyProxy` — a task metric (mIoU, accuracy, any function) on a labelled
  calibration set.
- :class:`AgreementProxy` — label-free: how closely the sparse model's outputs agree
  with the dense model's on a few images (1.0 means identical, e.g. at sparsity 0).

(The search's fallback, :func:`sparsevit_sdk.demo.default_proxy`, is the agreement proxy on demo images.)

Both are :class:`SplittableProxy`: a part of their batches scores to a state (metric counts,
per-image agreements) and states merge exactly, so ``SplitProxy`` (split.py) can score one
config over several workers and get the same float as one worker does.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._progress import progress_bar
from ..config import SparsityConfig
from ..outputs import tensor_leaves
from ..sparse.convert import search_space, set_sparsity, sparse_backbone
from ..sparse.state import check_config, preserved
from .metrics import MergeableMetric, Metric, as_metric

Measure = Literal["cosine", "kl"]


class CacheInfo(NamedTuple):
    hits: int  # calls answered from the cache
    misses: int  # calls that ran the model (= configs cached)


class Part(NamedTuple):
    """Slice ``index`` of ``of`` contiguous slices of a proxy's batches, scored at ``config``."""

    config: SparsityConfig
    index: int
    of: int


def part_range(batches: int, index: int, of: int) -> range:
    """The batch indices of part ``index`` of ``of``: contiguous, the first ``batches % of`` parts
    one batch longer, every part at least one batch (``of`` is checked against ``batches``)."""
    if isinstance(of, bool) or not isinstance(of, numbers.Integral) or not 1 <= of <= batches:
        raise ValueError(f"parts must be a whole number from 1 to {batches} (the proxy's batches: a part is at least "
                         f"one batch; a loader with smaller batches allows more parts), got {of!r}")
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < of:
        raise ValueError(f"part index must be a whole number from 0 to {of - 1}, got {index!r}")
    size, extra = divmod(batches, of)
    start = index * size + min(index, extra)
    return range(start, start + size + (index < extra))


def weights_state(model: nn.Module) -> tuple:
    """What changes when a weight does, read without touching a value: which parameter and buffer
    objects there are (a buffer is replaced by ``.to()`` or an assignment), their in-place version
    counters (optimizer steps, ``load_state_dict``), dtypes and devices.  Not their addresses:
    sending a model to a worker process moves its storage to shared memory, values unchanged."""
    return tuple((id(t), -1 if t.is_inference() else t._version, t.dtype, t.device)
                 for t in (*model.parameters(), *model.buffers()))


def window_scores(model: nn.Module) -> tuple[str, ...]:
    """How each stage ranks its windows: part of what a sparse config scores."""
    return tuple(stage.window_score for stage in sparse_backbone(model).stages)


class CachedProxy:
    """Base: validation, caching and state restoration around one ``_score()`` call.

    Subclasses set ``name`` and implement ``_score()``, which runs with the config
    applied, the model in eval mode and autograd off.  Scores are cached by config and the
    stages' window scores, for the weights in ``_weights`` (see :meth:`_check_weights`).
    """

    name: str

    def __init__(self, model: nn.Module, *, progress: bool = False) -> None:
        sparse_backbone(model)  # fail now, not at the first call, for a model we cannot sparsify
        self.model = model
        self.progress = progress
        self._cache: dict[tuple[SparsityConfig, tuple[str, ...]], float] = {}
        self._hits = 0
        self._weights = weights_state(model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, config: SparsityConfig) -> float:
        check_config(self.model, config)
        self._check_weights()
        key = (config, window_scores(self.model))
        if key in self._cache:
            self._hits += 1
            return self._cache[key]
        value = self._evaluate(config)
        self._cache[key] = value
        return value

    def _holds_results(self) -> bool:
        """Whether this proxy keeps anything computed from the weights (scores, dense outputs)."""
        return bool(self._cache)

    def _check_weights(self) -> None:
        """Refuse to answer from results of other weights than the model's now (never silently stale)."""
        now = weights_state(self.model)
        if now == self._weights:
            return
        if self._holds_results():
            raise RuntimeError(
                f"the model's weights changed (trained, loaded, or moved to another device or dtype) since proxy "
                f"{self.name!r} computed its cached results; call its cache_clear() to score the model as it is now")
        self._weights = now

    def _evaluate(self, config: SparsityConfig) -> float:
        """The score of a config not in the cache (checked already)."""
        with self._applied(config):
            return float(self._score())

    @contextmanager
    def _applied(self, config: SparsityConfig) -> Iterator[None]:
        with preserved(self.model, training=False), torch.inference_mode():
            set_sparsity(self.model, config)
            yield

    def _score(self) -> float:
        raise NotImplementedError

    def _progress(self, items: Sequence, desc: str) -> Iterable:
        return progress_bar(items, desc=desc, leave=False, enabled=self.progress)

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, len(self._cache))

    def cache_clear(self) -> None:
        """Forget every score; the next calls score the model's weights as they are then."""
        self._cache.clear()
        self._hits = 0
        self._weights = weights_state(self.model)

    def __setstate__(self, state: dict) -> None:
        """Unpickled in a worker: the same weights at new addresses, so the state is read afresh."""
        self.__dict__.update(state)
        self._weights = weights_state(self.model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self.cache_info()})"


class SplittableProxy(CachedProxy):
    """Base of proxies over a fixed list of ``batches`` whose score merges exactly from parts.

    Subclasses implement ``_state(indices)`` (the state of those batches, run with the config
    applied) and ``merge_states(states)`` (the score from the states of disjoint parts, in part
    order).  The whole set is scored as one part, so a split score and an unsplit one are computed
    by the same arithmetic and agree to the last bit.
    """

    batches: list

    def check_splittable(self) -> None:
        """Raise a TypeError naming the fix if parts of this proxy's scoring cannot merge."""

    def score_part(self, part: Part) -> np.ndarray:
        """The state of ``part`` (what a worker returns: counts, not a score)."""
        self.check_splittable()
        indices = part_range(len(self.batches), part.index, part.of)
        check_config(self.model, part.config)
        self._check_weights()
        with self._applied(part.config):
            return self._state(indices)

    def _score(self) -> float:
        return self.merge_states([self._state(range(len(self.batches)))])

    def _state(self, indices: range) -> np.ndarray:
        raise NotImplementedError

    def merge_states(self, states: Sequence[np.ndarray]) -> float:
        raise NotImplementedError


class AccuracyProxy(SplittableProxy):
    """A task metric of ``model`` at a config, on a labelled calibration set.

    ``loader`` yields ``(inputs, targets)``; it is read once, at construction, and kept
    in memory, so every config sees the same images (a shuffled loader would not).
    ``metric`` is a :class:`~sparsevit_sdk.accuracy.metrics.Metric` such as
    ``MeanIoU(num_classes)`` or a function ``(outputs, targets) -> float``, higher better.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
        *,
        metric: Metric | Callable[[torch.Tensor, torch.Tensor], float],
        name: str | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(model, progress=progress)
        self.metric = as_metric(metric)
        self.name = name or self.metric.name
        self.batches = [(x, y) for x, y in loader]
        if not self.batches:
            raise ValueError("the calibration loader yielded no batches; pass a loader over at least one batch")

    def noise(self, score: float) -> float:
        """The standard error of ``score`` (in [0, 1]) from which images the set holds: ``sqrt(p (1 - p) / N)``
        for N images.  The binomial error of an accuracy over images; for a metric over pixels (pixel accuracy,
        mIoU) each image counts as one draw, since the pixels of one image err together."""
        p = min(max(score, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / sum(len(x) for x, _ in self.batches))

    def chance(self) -> float | None:
        """What a model that learned nothing scores on this set (the metric's ``chance(targets)``: always the
        most frequent label), or None where the metric does not say."""
        chance = getattr(self.metric, "chance", None)
        return None if chance is None else float(chance(torch.cat([y.flatten() for _, y in self.batches])))

    def check_splittable(self) -> None:
        if not isinstance(self.metric, MergeableMetric):
            raise TypeError(f"metric {self.name!r} ({type(self.metric).__name__}) has no state() and merge(), so its "
                            "parts cannot be merged; give it those two methods (see MergeableMetric) or score unsplit")

    def _feed(self, indices: range) -> None:
        """The metric, reset, then updated with the batches at ``indices``."""
        self.metric.reset()
        device = self.device
        for x, y in self._progress([self.batches[i] for i in indices], f"eval {self.name}"):
            self.metric.update(self.model(x.to(device)), y.to(device))

    def _state(self, indices: range) -> np.ndarray:
        self._feed(indices)
        return self.metric.state()

    def merge_states(self, states: Sequence[np.ndarray]) -> float:
        self.metric.reset()
        self.metric.merge(states)
        return self.metric.compute()

    def _score(self) -> float:
        if isinstance(self.metric, MergeableMetric):
            return super()._score()
        self._feed(range(len(self.batches)))  # a user's metric without state() and merge(): scored whole
        return self.metric.compute()


def _agreement(sparse: torch.Tensor, dense: torch.Tensor, measure: Measure) -> torch.Tensor:
    """Per-image agreement ``(B,)`` of two ``(B, C, ...)`` maps along dim 1, averaged over positions.

    cosine: cosine similarity of the channel vectors; kl: ``exp(-KL(dense || sparse))`` of
    the softmax over dim 1 (for logits).  Both are 1 for identical maps.
    """
    if measure == "cosine":
        sim = F.cosine_similarity(sparse.float(), dense.float(), dim=1).clamp(max=1.0)  # (B, ...)
        return sim.reshape(len(sim), -1).mean(1)  # (B, ...) may be (B,): logits have no positions
    kl = F.kl_div(F.log_softmax(sparse.float(), 1), F.log_softmax(dense.float(), 1), log_target=True,
                  reduction="none").sum(1)  # (B, ...)
    return torch.exp(-kl.reshape(len(kl), -1).mean(1))


class AgreementProxy(SplittableProxy):
    """Label-free proxy: agreement of the sparse model's outputs with its own dense outputs.

    ``inputs`` is an image tensor ``(N, C, H, W)`` or an iterable of image batches (or of
    ``(inputs, targets)`` batches, whose targets are ignored).  Dense outputs are computed
    once, at construction.  ``measure="cosine"`` averages the cosine similarity of the
    output channel vectors over positions, images and output maps; ``measure="kl"`` uses
    ``exp(-KL)`` of softmaxed logits (for classification or segmentation heads).  The
    score is 1.0 at sparsity 0 and lower as the sparse model drifts.  Per-image agreements are
    summed exactly (``math.fsum`` of float64), whatever the batches or parts.  After the weights
    change, ``cache_clear()`` recomputes the dense outputs too.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor | Iterable[torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]],
        *,
        measure: Measure = "cosine",
        batch_size: int = 4,
        name: str | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(model, progress=progress)
        if measure not in ("cosine", "kl"):
            raise ValueError(f"unknown measure {measure!r}; choose 'cosine' or 'kl'")
        self.measure = measure
        self.name = name or f"agreement-{measure}"
        if isinstance(inputs, torch.Tensor):
            self.batches = list(inputs.split(batch_size))
        else:
            self.batches = [b[0] if isinstance(b, (tuple, list)) else b for b in inputs]
        if not self.batches or not sum(len(b) for b in self.batches):
            raise ValueError("AgreementProxy needs at least one input image; got none")
        self.reference = self._dense_outputs()

    def _holds_results(self) -> bool:
        return True  # the dense outputs every score compares with

    def cache_clear(self) -> None:
        """Forget every score and recompute the dense outputs from the weights as they are now."""
        super().cache_clear()
        self.reference = self._dense_outputs()

    def _outputs(self, indices: range) -> list[list[torch.Tensor]]:
        device = self.device
        batches = [self.batches[i] for i in indices]
        return [list(tensor_leaves(self.model(x.to(device)))) for x in self._progress(batches, f"eval {self.name}")]

    def _dense_outputs(self) -> list[list[torch.Tensor]]:
        with self._applied(search_space(self.model).dense()):
            return self._outputs(range(len(self.batches)))

    def _state(self, indices: range) -> np.ndarray:
        """Per-image agreement (float64), images in batch order."""
        per_image = [
            torch.stack([_agreement(s, d, self.measure) for s, d in zip(sparse, dense)]).mean(0)  # (B,)
            for sparse, dense in zip(self._outputs(indices), [self.reference[i] for i in indices])
        ]
        return torch.cat(per_image).double().cpu().numpy()

    def merge_states(self, states: Sequence[np.ndarray]) -> float:
        values = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in states])
        return math.fsum(values) / len(values)
