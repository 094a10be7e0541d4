"""The user's whole model, called the way the user calls it, and what it costs beyond its backbone.

Skipping windows speeds up the Swin backbone only; a decoder, a head or post-processing inside
``forward`` runs at full cost.  By Amdahl's law that decides what a user gets end to end
(a Mask2Former whose backbone is a quarter of its time gains at most 1.3x), so latencies are
predicted for the whole model: every backbone call of its forward, each at the config and at
the shape it is called with (a multi-scale or flip-augmented forward runs several), plus the
measured rest.

:class:`ModelForward` is the whole model as one module ``forward(x)``: ``model(x)``,
``model(pixel_values=x)`` for a Hugging Face model, a method (``call="forward_features"``) or any
``call(model, x)``.  So every runtime (eager, ``torch.compile``, ONNX Runtime) times it as it
times a backbone.  :meth:`ModelForward.probe` finds its backbone calls; :func:`measure_rest`
times it and those calls at sparsity 0 side by side.
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

from ..arch import check_input_shape, stage_tokens
from ..outputs import tensor_leaves
from ..runtimes import runtime_call
from ..sparse.convert import sparse_backbone
from ..sparse.state import preserved
from ..sparse.swin import SparseSwin
from .timing import time_callable

Call = str | Callable[[nn.Module, torch.Tensor], Any] | None
Shape = tuple[int, int, int, int]  # (B, C, H, W)


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

    def probe(self, x: torch.Tensor) -> tuple[Shape, ...]:
        """Run the model on ``x`` twice; return the input ``(B, C, H, W)`` of every call its
        forward makes to the sparse backbone, in order: one for a classifier, two for a forward
        at two scales or on an image and its flip, one of twice the batch for ``cat([x, x.flip(-1)])``.

        Refuses, naming the fix, a forward that needs more than the image, one that never runs
        the backbone (its latency cannot change with the config), one that runs part of it, and
        one whose calls change between two runs on the same input (no one latency fits them).
        """
        first = self._backbone_calls(x)
        again = self._backbone_calls(x)
        if again != first:
            raise ValueError(
                f"{type(self.model).__name__} run as {self.describe} called its sparse Swin backbone at "
                f"{format_shapes(first)}, then at {format_shapes(again)}, on the same {format_shapes([x.shape])} "
                "input: a forward whose backbone calls change from run to run (random scales, a data-dependent "
                "number of crops) has no one latency to predict; pass call= a fixed forward (e.g. "
                "call=lambda model, x: model(x, scales=(1.0, 0.5))), in eval mode")
        return first

    def _backbone_calls(self, x: torch.Tensor) -> tuple[Shape, ...]:
        """One run of :meth:`probe`.  A call is read where every source runs one: its first sparse
        stage's ``forward_blocks`` on the token map ``(B, H/p, W/p, C)``.  A map of ``x``'s own
        token grid keeps ``x``'s size; another is the image size its patches cover."""
        backbone = self.backbone
        stage, last = backbone.stages[0], backbone.stages[-1].blocks[-1]
        grids: list[tuple[int, int, int]] = []  # (B, H/p, W/p) of each call
        ends = [0]  # runs of the last block
        run_blocks = stage.forward_blocks

        def record(tokens: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            grids.append(tuple(int(v) for v in tokens.shape[:3]))
            return run_blocks(tokens, *args, **kwargs)

        stage.forward_blocks = record  # an instance attribute over the method, for this run only
        hook = last.register_forward_hook(lambda *_: ends.__setitem__(0, ends[0] + 1))
        try:
            with preserved(self.model, training=False), torch.no_grad():  # eval: no running statistics move
                self(x)
        except (TypeError, ValueError, RuntimeError, KeyError, AttributeError, AssertionError) as err:
            raise ValueError(
                f"could not run the model as {self.describe} on a {tuple(x.shape)} input "
                f"({type(err).__name__}: {err}); if its forward needs more than the image, pass "
                "call=lambda model, x: model(x, <the other inputs>) (or call='forward_features' to time "
                "a method)") from err
        finally:
            hook.remove()
            del stage.forward_blocks
        name = type(self.model).__name__
        if not grids and not ends[0]:
            raise ValueError(f"{name} run as {self.describe} never runs its sparse Swin backbone, so no config can "
                             "change its latency; pass call= that runs it (e.g. call=lambda model, x: model(x))")
        if len(grids) != ends[0]:
            raise ValueError(f"{name} run as {self.describe} runs the first stage of its sparse Swin {len(grids)} "
                             f"time(s) and its last block {ends[0]} time(s): latencies are predicted for whole "
                             "backbone calls, not a part of one; pass call= that runs the backbone through (e.g. "
                             "call=lambda model, x: model(x))")
        p = backbone.patch_size
        own = stage_tokens(x.shape[-2], x.shape[-1], p, 1)[0]
        return tuple((b, backbone.in_chans, *(tuple(x.shape[-2:]) if (h, w) == own else (h * p, w * p)))
                     for b, h, w in grids)


def format_shapes(shapes: Sequence[Sequence[int]]) -> str:
    """Shapes as reports print them: ``1x3x224x224, 1x3x112x112``."""
    return ", ".join("x".join(str(int(v)) for v in shape) for shape in shapes)


def describe_calls(shapes: Sequence[Sequence[int]]) -> str:
    """``2 calls (1x3x224x224, 1x3x112x112)``: a forward's backbone calls, for notes and errors."""
    return f"{len(shapes)} call{'s' * (len(shapes) != 1)} ({format_shapes(shapes)})"


@dataclass(frozen=True)
class RestOfModel:
    """What a whole model costs beyond its backbone: ``ms`` per model call, beside the ``calls``
    backbone calls its forward makes, ``shapes`` their inputs ``(B, C, H, W)`` in order (``()`` in
    records written before shapes were kept: that many calls at the input shape).

    ``whole_ms``/``backbone_ms`` are the dense measurements it came from, the backbone's summed
    over its calls (0 where none: a bare backbone, or a given ``rest_ms``); ``source`` is "none"
    (the model is a backbone), "measured", "estimated" or "given"; ``note`` says how, for reports.
    """

    ms: float = 0.0
    calls: int = 1
    whole_ms: float = 0.0
    backbone_ms: float = 0.0
    source: str = "none"
    note: str = "the model is its backbone"
    shapes: tuple[Shape, ...] = ()

    def call_shapes(self, input_shape: Sequence[int]) -> tuple[Shape, ...]:
        """The input of each backbone call in one forward of the model at ``input_shape``."""
        return self.shapes or (tuple(int(v) for v in input_shape),) * self.calls

    def end_to_end(self, backbone_ms: Any) -> Any:
        """Whole-model latency from its backbone calls' (summed over the calls; a float or an array)."""
        return backbone_ms + self.ms

    def backbone(self, end_to_end_ms: Any) -> Any:
        """The backbone calls' share of a whole-model latency: the inverse of :meth:`end_to_end`."""
        return end_to_end_ms - self.ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shapes": [list(shape) for shape in self.shapes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestOfModel:
        rest = cls(ms=float(data["ms"]), calls=int(data["calls"]), whole_ms=float(data.get("whole_ms", 0.0)),
                   backbone_ms=float(data.get("backbone_ms", 0.0)), source=str(data.get("source", "given")),
                   note=str(data.get("note", "")),
                   shapes=tuple(check_input_shape(shape) for shape in data.get("shapes") or ()))
        shaped = len(rest.shapes) in (0, rest.calls)
        if not (rest.ms >= 0 and rest.ms < float("inf") and rest.calls >= 1 and shaped):
            raise ValueError(f"rest of model: need a finite ms >= 0, calls >= 1 and a shape per call (or none), "
                             f"got {data}")
        return rest


def backbone_calls(backbone: nn.Module, shapes: Sequence[Sequence[int]], x: torch.Tensor, runtime: str = "eager",
                   *, threads: int | None = None) -> Callable[[], None]:
    """``backbone`` run once per call of a whole model's forward, each at its call's shape, in
    ``runtime`` (compiled or exported here, once per shape): what the forward spends in its
    backbone, to time beside it.  A call of ``x``'s shape gets ``x``, another a random input."""
    ready = {}
    for shape in dict.fromkeys(tuple(shape) for shape in shapes):
        data = x if tuple(x.shape) == shape else torch.randn(shape, device=x.device, dtype=x.dtype)
        ready[shape] = runtime_call(backbone, data, runtime, threads=threads)
    order = [ready[tuple(shape)] for shape in shapes]

    def run() -> None:
        for fn in order:
            fn()
    return run


def measure_rest(forward: ModelForward, input_shape: Sequence[int], device: str | torch.device = "cpu", *,
                 threads: int | None = None, clock: str = "wall", runtime: str = "eager", budget_s: float = 20.0,
                 pairs: tuple[int, int] = (5, 25)) -> RestOfModel:
    """Time ``forward`` and its backbone calls (:func:`backbone_calls`) at the sparsity it has (the
    caller sets it dense), alternating; the rest is the median of the paired differences (whole
    minus the calls, never below 0).

    Paired calls share the machine's state of the moment, so drift and load cancel: the rest of a
    classifier is a few per cent of its time, less than two separate minima differ by on a shared
    machine.  As many pairs as fit in ``budget_s`` (within ``pairs``) after one warm-up pair.
    ``runtime`` ("eager", "compiled", "onnxruntime") runs both, each compiled or exported once.
    """
    if forward.is_backbone:
        return RestOfModel()
    shape = check_input_shape(input_shape, forward.backbone.in_chans)
    x = torch.randn(*shape, device=device)
    shapes = forward.probe(x)
    fns = (runtime_call(forward, x, runtime, threads=threads),
           backbone_calls(forward.backbone, shapes, x, runtime, threads=threads))

    def sample() -> tuple[float, float]:
        return tuple(time_callable(fn, device, warmup=0, repeats=1, threads=threads, clock=clock).min_ms
                     for fn in fns)

    first = sample()
    count = min(max(int(budget_s * 1e3 / sum(first)), pairs[0]), pairs[1])
    whole, part = np.array([sample() for _ in range(count)]).T
    return RestOfModel(
        ms=max(0.0, float(np.median(whole - part))), calls=len(shapes), whole_ms=float(whole.min()),
        backbone_ms=float(part.min()), source="measured", shapes=shapes,
        note=f"measured on {device}: {forward.describe} {whole.min():.4g} ms, backbone {part.min():.4g} ms in "
             f"{describe_calls(shapes)}, {count} paired calls")
