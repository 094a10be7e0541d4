"""The user's whole model, called the way the user calls it, and what it costs beyond its backbone.

Skipping windows speeds up the Swin backbone only; a decoder, a head or post-processing inside
``forward`` runs at full cost.  By Amdahl's law that decides what a user gets end to end
(a Mask2Former whose backbone is a quarter of its time gains at most 1.3x), so latencies are
predicted for the whole model: ``calls`` backbone forwards at the config plus the measured rest.

:class:`ModelForward` is the whole model as one module ``forward(x)``: ``model(x)``,
``model(pixel_values=x)`` for a Hugging Face model, a method (``call="forward_features"``) or any
``call(model, x)``.  So every runtime (eager, ``torch.compile``, ONNX Runtime) times it as it
times a backbone.  :func:`measure_rest` times it and its backbone at sparsity 0 side by side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils import _pytree as pytree

from ..arch import check_input_shape
from ..runtimes import runtime_call
from ..sparse.convert import sparse_backbone
from ..sparse.swin import SparseSwin
from .timing import time_callable

Call = str | Callable[[nn.Module, torch.Tensor], Any] | None


def _resolve_call(model: nn.Module, call: Call) -> tuple[Callable[[nn.Module, torch.Tensor], Any], str]:
    """The function that runs ``model`` on an image batch, and how to print it."""
    if call is None:
        name = getattr(model, "main_input_name", None)
        if isinstance(name, str) and hasattr(model, "config") and not isinstance(model, SparseSwin):
            return (lambda m, x: m(**{name: x})), f"model({name}=x)"  # a Hugging Face model
        return (lambda m, x: m(x)), "model(x)"
    if isinstance(call, str):
        if not callable(getattr(model, call, None)):
            raise ValueError(f"call={call!r}: {type(model).__name__} has no method {call!r}; pass the name of a "
                             "method that takes the image batch (e.g. 'forward_features') or call=lambda model, x: ...")
        return (lambda m, x: getattr(m, call)(x)), f"model.{call}(x)"
    if callable(call):
        return call, f"{getattr(call, '__qualname__', type(call).__name__)}(model, x)"
    raise TypeError(f"call must be None, a method name or a callable(model, x), got {type(call).__name__}")


def tensor_leaves(output: Any) -> tuple[torch.Tensor, ...]:
    """Every tensor in a forward's output: a tensor, tuple, dict or Hugging Face ``ModelOutput``."""
    if isinstance(output, dict):  # a ModelOutput is a dict of what it holds
        output = list(output.values())
    return tuple(t for t in pytree.tree_leaves(output) if isinstance(t, torch.Tensor))


class ModelForward(nn.Module):
    """``model`` run as the user runs it, as a module of one input returning its output tensors.

    ``call`` is None (``model(x)``; ``model(pixel_values=x)`` for a Hugging Face model), the
    name of a method taking the image batch (``"forward_features"``), or ``call(model, x)``.
    ``is_backbone`` says the model is its sparse Swin and nothing more (no rest to measure).
    """

    def __init__(self, model: nn.Module, call: Call = None) -> None:
        super().__init__()
        self.model = model
        self._run, self.describe = _resolve_call(model, call)
        self.is_backbone = isinstance(model, SparseSwin) and call is None

    @property
    def backbone(self) -> SparseSwin:
        return sparse_backbone(self.model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tensor_leaves(self._run(self.model, x))

    def key(self) -> str:
        """Which model and call a rest was measured for: the class, how it is called, and every
        parameter and buffer name and shape (not their values: latency does not depend on them)."""
        shapes = [(name, list(t.shape)) for name, t in self.model.state_dict().items()]
        what = json.dumps([type(self.model).__qualname__, self.describe, shapes])
        return f"{type(self.model).__name__}-{hashlib.sha256(what.encode()).hexdigest()[:12]}"

    def probe(self, x: torch.Tensor) -> int:
        """Run the model once on ``x``; return how many times its forward runs the sparse backbone.

        Refuses, naming the fix, a forward that needs more than the image, one that never runs
        the backbone (its latency cannot change with the config), and one that feeds the
        backbone another size than ``x`` (latencies would be predicted for the wrong input).
        """
        backbone = self.backbone
        first, last = backbone.stages[0].blocks[0], backbone.stages[-1].blocks[-1]
        rows: list[int] = []
        runs = [0]
        hooks = [first.register_forward_hook(lambda m, args, out: rows.append(int(args[0].shape[0]))),
                 last.register_forward_hook(lambda m, args, out: runs.__setitem__(0, runs[0] + 1))]
        try:
            with torch.no_grad():
                try:
                    self(x)
                except (TypeError, ValueError, RuntimeError, KeyError, AttributeError, AssertionError) as err:
                    raise ValueError(
                        f"could not run the model as {self.describe} on a {tuple(x.shape)} input "
                        f"({type(err).__name__}: {err}); if its forward needs more than the image, pass "
                        "call=lambda model, x: model(x, <the other inputs>) (or call='forward_features' to time "
                        "a method)") from err
                calls, in_model = runs[0], rows[:]
                if calls == 0:
                    raise ValueError(f"{type(self.model).__name__} run as {self.describe} never runs its sparse "
                                     "Swin backbone, so no config can change its latency; pass call= that runs "
                                     "it (e.g. call=lambda model, x: model(x))")
                rows.clear()
                backbone(x)
        finally:
            for hook in hooks:
                hook.remove()
        if in_model[0] != rows[0]:
            raise ValueError(f"the backbone inside {self.describe} sees another input size than the "
                             f"{tuple(x.shape)} given (its first stage holds {in_model[0]} tokens, not {rows[0]}): "
                             "the model resizes its input first, so latencies would be predicted for the wrong size; "
                             "resize outside the model and pass input_shape= the size the model then gets")
        return calls


@dataclass(frozen=True)
class RestOfModel:
    """What a whole model costs beyond its backbone: ``ms`` per model call, next to ``calls``
    backbone forwards.  ``whole_ms``/``backbone_ms`` are the dense measurements it came from
    (0 where none: a bare backbone, or a given ``rest_ms``); ``source`` is "none" (the model is
    a backbone), "measured", "estimated" or "given"; ``note`` says how, for reports."""

    ms: float = 0.0
    calls: int = 1
    whole_ms: float = 0.0
    backbone_ms: float = 0.0
    source: str = "none"
    note: str = "the model is its backbone"

    def end_to_end(self, backbone_ms: Any) -> Any:
        """Whole-model latency from the backbone's (a float or an array)."""
        return self.calls * backbone_ms + self.ms

    def backbone(self, end_to_end_ms: Any) -> Any:
        """The backbone's latency inside a whole-model latency: the inverse of :meth:`end_to_end`."""
        return (end_to_end_ms - self.ms) / self.calls

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestOfModel:
        rest = cls(ms=float(data["ms"]), calls=int(data["calls"]), whole_ms=float(data.get("whole_ms", 0.0)),
                   backbone_ms=float(data.get("backbone_ms", 0.0)), source=str(data.get("source", "given")),
                   note=str(data.get("note", "")))
        if not (rest.ms >= 0 and rest.ms < float("inf") and rest.calls >= 1):
            raise ValueError(f"rest of model: need a finite ms >= 0 and calls >= 1, got {data}")
        return rest


def measure_rest(forward: ModelForward, input_shape: Sequence[int], device: str | torch.device = "cpu", *,
                 threads: int | None = None, clock: str = "wall", runtime: str = "eager", budget_s: float = 20.0,
                 pairs: tuple[int, int] = (5, 25)) -> RestOfModel:
    """Time ``forward`` and its backbone at the sparsity it has (the caller sets it dense) call by
    call, alternating; the rest is the median of the paired differences (whole minus ``calls``
    backbones, never below 0).

    Paired calls share the machine's state of the moment, so drift and load cancel: the rest of a
    classifier is a few per cent of its time, less than two separate minima differ by on a shared
    machine.  As many pairs as fit in ``budget_s`` (within ``pairs``) after one warm-up pair.
    ``runtime`` ("eager", "compiled", "onnxruntime") runs both, each compiled or exported once.
    """
    shape = check_input_shape(input_shape, forward.backbone.in_chans)
    x = torch.randn(*shape, device=device)
    calls = forward.probe(x)
    if forward.is_backbone:
        return RestOfModel()
    backbone = forward.backbone
    fns = tuple(runtime_call(m, x, runtime, threads=threads) for m in (forward, backbone))

    def sample() -> tuple[float, float]:
        return tuple(time_callable(fn, device, warmup=0, repeats=1, threads=threads, clock=clock).min_ms
                     for fn in fns)

    first = sample()
    count = min(max(int(budget_s * 1e3 / sum(first)), pairs[0]), pairs[1])
    whole, part = np.array([sample() for _ in range(count)]).T
    rest = float(np.median(whole - calls * part))
    return RestOfModel(ms=max(0.0, rest), calls=calls, whole_ms=float(whole.min()), backbone_ms=float(part.min()),
                       source="measured", note=f"measured on {device}: {forward.describe} {whole.min():.4g} ms, "
                                               f"backbone {part.min():.4g} ms x {calls}, {count} paired calls")
