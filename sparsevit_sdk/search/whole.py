"""Latency of the user's whole model on the search's target: the backbone's prediction plus the rest.

The rest (heads, decoders, what else ``forward`` runs) does not depend on the sparsity config,
so it is one number per model, input shape and target, found in this order:

1. the model is its backbone: nothing to add;
2. ``rest_ms`` given by the user;
3. the predictor was measured on this machine's device (``hw="local"``, or a profile of it):
   measured here, whole model and backbone at sparsity 0 call by call, with the predictor's
   threads and clock;
4. the predictor's profile timed this whole model on its device (``profile_model(model)`` or
   ``for_device(model, input_shape, device)`` there): that measurement;
5. any other target (another CPU's profile, a GPU estimate): **estimated** as the rest
   measured here times the ratio of the target's predicted backbone latency to the backbone's
   measured here, i.e. assuming the head speeds up from here to there as the backbone does.
   Reports flag it; profile the target (or pass ``rest_ms``) for a measured one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..config import SearchSpace
from ..dataset.fingerprint import device_mismatch, stored_fingerprints
from ..predictor.latency import LatencyPredictor
from ..profiler.fingerprint import device_fingerprint
from ..profiler.forward import ModelForward, RestOfModel, measure_rest
from ..profiler.timing import num_threads
from ..sparse.convert import set_sparsity
from ..sparse.state import preserved


def fitted_elsewhere(predictor: LatencyPredictor) -> tuple[str | None, dict | None]:
    """Why ``predictor``'s measurements are not of this machine's CPU (None: they are), and the
    fingerprint of this CPU as the predictor's data was timed (None for an estimate or a GPU)."""
    fitted = [fp for fp in stored_fingerprints(predictor.learned_.fingerprint) if fp.get("device_type") == "cpu"]
    if predictor.learned_.estimated or not fitted:
        return "its latencies are not measured on a CPU", None
    here = device_fingerprint("cpu", threads=max(predictor.learned_.threads), clock=fitted[0].get("clock", "wall"))
    return device_mismatch(here, fitted), here


def rest_of_model(forward: ModelForward, predictor: LatencyPredictor, space: SearchSpace, input_shape: Sequence[int], *,
                  rest_ms: float | None = None) -> RestOfModel:
    """What ``forward`` costs beyond its backbone on ``predictor``'s target (see the module docstring)."""
    if forward.is_backbone:
        return RestOfModel()
    backbone = forward.backbone
    if rest_ms is not None:
        if not (isinstance(rest_ms, (int, float)) and 0 <= rest_ms < float("inf")):
            raise ValueError(f"rest_ms is the whole model's latency beyond its backbone, a finite number of ms >= 0; "
                             f"got {rest_ms!r}")
        calls = forward.probe(torch.randn(*input_shape))
        return RestOfModel(ms=float(rest_ms), calls=calls, source="given", note="rest_ms given by the user")
    why, here = fitted_elsewhere(predictor)
    stored = None if why is None else predictor.rest_for(forward.key(), input_shape)
    if stored is not None:
        forward.probe(torch.randn(*input_shape))  # the model still runs as it did there
        return RestOfModel(
            ms=stored["ms"], calls=int(stored["calls"]), whole_ms=stored["whole_ms"],
            backbone_ms=stored["backbone_ms"], source="measured",
            note=f"measured on {predictor.hw} when it was profiled: {forward.describe} {stored['whole_ms']:.4g} "
                 f"ms, backbone {stored['backbone_ms']:.4g} ms x {stored['calls']}")
    # here: as the predictor's data was timed, in its runtime; else one thread, eager, as estimates are
    threads, clock, runtime = ((int(here["threads"]), here["clock"], predictor.learned_.runtime) if why is None else
                               (1, "cpu", "eager"))
    with preserved(forward.model, training=False), num_threads(threads), torch.no_grad():
        set_sparsity(backbone, space.dense())
        measured = measure_rest(forward, input_shape, "cpu", threads=threads, clock=clock, runtime=runtime)
    if why is None:
        return measured
    dense_ms = predictor.predict_config(backbone, input_shape, space.dense())
    scale = dense_ms / measured.backbone_ms
    return RestOfModel(
        ms=measured.ms * scale, calls=measured.calls, whole_ms=measured.whole_ms, backbone_ms=measured.backbone_ms,
        source="estimated",
        note=(f"ESTIMATED: measured on this CPU ({measured.ms:.4g} ms beside a {measured.backbone_ms:.4g} ms "
              f"backbone), scaled by the {predictor.hw} backbone's predicted {dense_ms:.4g} ms ({why}); "
              "pass rest_ms= or profile the target for a measured one"))
