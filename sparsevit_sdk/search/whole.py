"""Latency of the user's whole model on the search's target: its backbone calls' predictions plus the rest.

A forward may call the backbone more than once and at other shapes than its input (two scales,
an image and its flip in one doubled batch): :func:`predict_calls` prices each call at its own
shape.  The rest (heads, decoders, resizing, what else ``forward`` runs) does not depend on the
sparsity config, so it is one number per model, input shape and target, found in this order:

1. the model is its backbone: nothing to add;
2. ``rest_ms`` given by the user;
3. the predictor was measured on this machine's device (``hw="local"``, or a profile of it):
   measured here, whole model and its backbone calls at sparsity 0 side by side, with the
   predictor's threads and clock;
4. the predictor's profile timed this whole model on its device (``profile_model(model)`` or
   ``for_device(model, input_shape, device)`` there): that measurement, less its backbone calls
   there (those at another shape than the profiled input predicted);
5. any other target (another CPU's profile, a GPU estimate): **estimated** as the rest
   measured here times the ratio of the target's predicted backbone calls to those measured
   here, i.e. assuming the head speeds up from here to there as the backbone does.
   Reports flag it; profile the target (or pass ``rest_ms``) for a measured one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn

from ..checks import checked, number, optional
from ..config import SearchSpace, SparsityConfig
from ..predictor.latency import LatencyPredictor
from ..profiler.forward import ModelForward, RestOfModel, describe_calls, format_shapes, measure_rest
from ..profiler.timing import num_threads
from ..sparse.convert import set_sparsity
from ..sparse.state import preserved
from ..target import Target
from .settings import SearchSettings, resolve_budget


def predict_calls(predictor: LatencyPredictor, backbone: nn.Module, rest: RestOfModel, input_shape: Sequence[int],
                  configs: Sequence[SparsityConfig]) -> np.ndarray:
    """Predicted ms of the backbone calls in one forward of the whole model at ``input_shape``, per
    config: each call priced at its own shape (a multi-scale forward's half-size call as a
    half-size backbone, a flip-augmented forward's doubled batch as a doubled batch), summed."""
    counts = Counter(rest.call_shapes(input_shape))
    return sum(n * predictor.predict_configs(backbone, shape, configs) for shape, n in counts.items())


RestMs = optional(number(ge=0, unit="milliseconds"), "measured or estimated")  # the rest, as a user may give it


@checked
def rest_of_model(forward: ModelForward, target: Target | LatencyPredictor, space: SearchSpace,
                  input_shape: Sequence[int], *, rest_ms: RestMs = None) -> RestOfModel:
    """What ``forward`` costs beyond its backbone calls on ``target`` (a :class:`Target`, or a predictor
    resolved to one; see the module docstring)."""
    if forward.is_backbone:
        return RestOfModel()
    backbone = forward.backbone
    if rest_ms is not None:
        shapes = forward.probe(torch.randn(*input_shape))
        return RestOfModel(ms=float(rest_ms), calls=len(shapes), shapes=shapes, source="given",
                           note=f"rest_ms given by the user, beside the backbone's {describe_calls(shapes)}")
    target = Target.resolve(target, backbone, input_shape)
    predictor, why = target.predictor, target.why_not_here
    stored = None if target.measured_here else predictor.rest_for(forward.key(), input_shape)
    if stored is not None:
        return _profiled_rest(forward, predictor, space, input_shape, stored)
    # here: as the predictor's data was timed, in its runtime; else one thread, eager, as estimates are
    threads, clock, runtime = ((target.threads, target.clock, target.runtime) if target.measured_here else
                               (1, "cpu", "eager"))
    with preserved(forward.model, training=False), num_threads(threads), torch.no_grad():
        set_sparsity(backbone, space.dense())
        measured = measure_rest(forward, input_shape, "cpu", threads=threads, clock=clock, runtime=runtime)
    if target.measured_here:
        return measured
    dense_ms = float(predict_calls(predictor, backbone, measured, input_shape, [space.dense()])[0])
    return replace(
        measured, ms=measured.ms * dense_ms / measured.backbone_ms, source="estimated",
        note=(f"ESTIMATED: measured on this CPU ({measured.ms:.4g} ms beside a {measured.backbone_ms:.4g} ms "
              f"backbone in {describe_calls(measured.shapes)}), scaled by the {predictor.hw} backbone's predicted "
              f"{dense_ms:.4g} ms ({why}); pass rest_ms= or profile the target for a measured one"))


def _profiled_rest(forward: ModelForward, predictor: LatencyPredictor, space: SearchSpace, input_shape: Sequence[int],
                   stored: dict) -> RestOfModel:
    """The rest a profile of the target measured: the whole model there minus its backbone calls.
    The profile timed the dense backbone at the input shape; a call at another shape (a
    multi-scale forward's) is priced by the predictor, which was fitted on that profile."""
    shapes = forward.probe(torch.randn(*input_shape))  # the model still runs as it did there
    if len(shapes) != int(stored["calls"]):
        raise ValueError(f"{forward.describe} calls its backbone in {describe_calls(shapes)} here, but "
                         f"{stored['calls']} time(s) when {predictor.hw} was profiled: the model changed since; "
                         "profile it again (profile_model(model)) or pass rest_ms=")
    shape = tuple(int(v) for v in input_shape)
    if all(s == shape for s in shapes):  # every call is the one the profile timed
        ms, calls_ms = float(stored["ms"]), len(shapes) * float(stored["backbone_ms"])
        how = f"backbone {stored['backbone_ms']:.4g} ms x {len(shapes)}"
    else:
        calls_ms = sum(float(stored["backbone_ms"]) if s == shape else
                       predictor.predict_config(forward.backbone, s, space.dense()) for s in shapes)
        ms = max(0.0, float(stored["whole_ms"]) - calls_ms)
        how = (f"backbone {calls_ms:.4g} ms in {describe_calls(shapes)}, those of another shape than "
               f"{format_shapes([shape])} predicted")
    return RestOfModel(ms=ms, calls=len(shapes), shapes=shapes, whole_ms=float(stored["whole_ms"]),
                       backbone_ms=calls_ms, source="measured",
                       note=f"measured on {predictor.hw} when it was profiled: {forward.describe} "
                            f"{stored['whole_ms']:.4g} ms, {how}")


def check_reachable(latency: Callable[[list[SparsityConfig]], np.ndarray], space: SearchSpace, settings: SearchSettings,
                    rest: RestOfModel, hw: str, describe: str) -> None:
    """Refuse a whole-model budget that Amdahl's law puts out of reach (``latency``: predicted whole-model ms of
    configs), before any proxy call; the engine refuses an unreachable backbone budget itself."""
    s = settings
    if s.budget_of == "backbone" or rest.ms == 0:
        return
    uniform = [space.dense(), *(space.uniform(g) for g in space.grid)]
    ms = latency(uniform)
    dense, i = float(ms[0]), int(np.argmin(ms))
    budget = resolve_budget(s.latency_budget, s.budget_ms, dense)
    if budget >= ms[i]:
        return
    raise ValueError(
        f"latency budget {budget:.4g} ms cannot be met end to end: the backbone is {(dense - rest.ms) / dense:.0%} "
        f"of this model's {dense:.4g} ms on {hw} ({describe}; the rest, {rest.ms:.4g} ms, does not speed up: "
        f"{rest.note}); the most any config can reach is {dense / ms[i]:.2f}x ({ms[i]:.4g} ms at {uniform[i]}), and "
        f"a backbone that took no time would give {dense / rest.ms:.2f}x. Raise the budget to "
        f"latency_budget={math.ceil(ms[i] / dense * 100) / 100} or more, or pass budget_of='backbone' to budget the "
        "backbone alone")
