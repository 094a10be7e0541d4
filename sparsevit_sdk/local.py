"""A predictor for *this* device, in one call: measure what informs most, calibrate the
nearest shipped predictor, keep the result in the user's cache.

A predictor fitted on one CPU is off by 1.5x on another, and even a device's own
whole-profile predictor misses some shapes (71 % of the Intel Xeon's held-out swin_micro
models within ±10 %): a unit timed alone can hit a cache edge that the same unit inside a
model does not (benchmarks/RESULTS.md, "Shipped predictors on their own held-out configs").
So the calibration is done where the search will use it: at the deployment model, input
shape, dtype and thread count. It times every block pair of each stage at each grid
sparsity and the scoring and glue units, then whole models until the predictor meets its target
on whole models held out of the fit, or its time limit (:mod:`.calibration`);
:meth:`LatencyPredictor.calibrate` fits the group scales, the per-geometry residual curves (trusted
as far as cross-validation on the whole models allows) and the overhead.

Given a whole model (a classifier, a segmenter around its Swin), it also times the model as it is
called at sparsity 0 beside its backbone, so the predictor knows the rest of the model on this
device (``rest_for``).

The result is cached under ``$SPARSEVIT_CACHE`` (default ``~/.cache/sparsevit_sdk``),
keyed by device fingerprint (with the threads and clock), model signature and MLP ratio,
input shape, dtype and runtime; the next call loads it instead of measuring.  A cache that cannot
be written (a full disk, a path that is no folder) never costs the calibration: it is returned, and
one warning says why it was not kept and how to keep the next.

``runtime="compiled"`` or ``"onnxruntime"`` times the whole models in that runtime (units stay
eager: they are what the predictor adds up, and the whole models fit how the runtime
changes the sum), so the search predicts latencies where the model will be deployed.

It sits above both the profiler and the predictor (which reads profiles without the
profiler, as in nn-Meter) and imports them both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch.nn as nn

from ._atomic import write_json
from ._data import shipped_predictors
from ._documents import DocumentError
from ._logs import warn_once
from .arch import Architecture, check_input_shape
from .calibration import MIN_MODELS, calibrate_here
from .dataset.fingerprint import same_device, stored_fingerprints
from .devices import dtype_name, resolve_device
from .hardware import gpu_target
from .models import input_shape_for
from .predictor.latency import LatencyPredictor
from .profiler.fingerprint import device_fingerprint
from .profiler.forward import Call, ModelForward
from .profiler.reference import CHANGED, speed_change
from .runtimes import check_runtime
from .sparse.convert import sparse_backbone

logger = logging.getLogger(__name__)

LOCAL = "local"  # the hw name of predictors calibrated on the device they run on
# how calibrations are measured, part of their cache key: an entry an earlier procedure measured is measured again
# (2: whole models in steps until the target or the time limit; 3: the dense model timed in every step and
# recorded, a slow model's units timed lighter: see calibration.py)
PROCEDURE = 3


def cache_dir() -> Path:
    """Where calibrated predictors are kept: ``$SPARSEVIT_CACHE`` or ``~/.cache/sparsevit_sdk``."""
    return Path(os.environ.get("SPARSEVIT_CACHE") or "~/.cache/sparsevit_sdk").expanduser() / "predictors"


def cache_fields(fingerprint: dict, arch: Architecture, input_shape: Sequence[int], dtype: str,
                 runtime: str = "eager", whole: str | None = None) -> dict:
    """What a calibration is valid for: how it was measured (:data:`PROCEDURE`), the device (its fingerprint
    id, threads and clock), the architecture, the input shape, the dtype and the runtime; and for a whole
    model, its key (the rest of the model was timed too).  A cache entry holds these, and is used only for them."""
    return {"procedure": PROCEDURE, "fingerprint": fingerprint["fingerprint_id"], "threads": fingerprint["threads"],
            "clock": fingerprint.get("clock", "wall"), "signature": arch.signature, "mlp_ratio": arch.mlp_ratio,
            "input_shape": list(input_shape), "dtype": dtype, "runtime": runtime, **({"whole": whole} if whole else {})}


def cache_key(fields: dict) -> str:
    """The file name of the cache entry for :func:`cache_fields`."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def nearest_shipped(fingerprint: dict) -> LatencyPredictor:
    """The shipped predictor most like this device: its own fingerprint if shipped; on a
    GPU the published-figure estimate of the target whose name it carries (else the A100's);
    on a CPU the measured one sharing the most ISA features (ties: the first name)."""
    if fingerprint["device_type"] == "cuda":
        return LatencyPredictor.for_hardware(gpu_target(fingerprint["name"]) or "a100")
    candidates = []
    for name, path in shipped_predictors().items():
        predictor = LatencyPredictor.load(path)
        if predictor.learned_.estimated:
            continue
        stored = stored_fingerprints(predictor.learned_.fingerprint)
        if same_device(fingerprint, stored):
            return predictor
        described = [fp for fp in stored if "device_type" in fp]
        kind = any(fp["device_type"] == fingerprint["device_type"] for fp in described)
        shared = max((len(set(fp.get("isa", [])) & set(fingerprint.get("isa", []))) for fp in described), default=0)
        candidates.append((not kind, -shared, name, predictor))
    if not candidates:
        raise ValueError("no measured predictor is shipped to calibrate from; profile this device with "
                         "`sparsevit-profile` and fit one with `sparsevit-fit`")
    return min(candidates, key=lambda c: c[:3])[3]


def for_device(model: nn.Module, input_shape: Sequence[int] | None = None, device: str = "cpu", *, dtype: str = "fp32",
               threads: int | None = None, runtime: str = "eager", base: LatencyPredictor | None = None,
               cache: bool = True, refresh: bool = False, call: Call = None, progress: bool = True,
               time_limit: float | None = None) -> LatencyPredictor:
    """A predictor for ``model`` at ``input_shape`` (default: the size the model declares, see
    :func:`~sparsevit_sdk.models.input_shape_for`) on ``device`` ("cpu", "cuda:0"),
    calibrated here, then cached (see the module's notes) so the next call returns at once
    (``refresh`` measures again and replaces it; ``cache=False`` neither reads nor writes it).
    It measures until 90 % of its held-out whole models are predicted within ±10 %, or for
    ``time_limit`` seconds (default: 200 dense forwards, at least a minute and at most two:
    Swin-T at 672 gets two minutes on a 2-core CPU); one that stops short says so.

    ``base`` defaults to the shipped predictor nearest this device; ``threads`` (CPU)
    defaults to 1, timed on the thread CPU clock, and N > 1 is timed on the wall clock;
    ``runtime`` ("eager", "compiled", "onnxruntime") is what the whole models are timed in.
    ``model`` may be a whole model around its Swin (a classifier, a segmenter): it is then
    also timed as it is called (``call``: None, a method name or ``call(model, x)``) at
    sparsity 0, and ``rest_for`` gives what it costs beyond its backbone here.

    Args:
        model: a built-in model, a :class:`~sparsevit_sdk.sparse.swin.SparseSwin` or a model
            :func:`~sparsevit_sdk.sparse.convert.sparsify` made (whole models are timed as called).
        input_shape: the deployment input ``(B, C, H, W)`` in pixels.
        device: ``"cpu"`` or ``"cuda:N"``: where to measure.
        dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        threads: CPU threads to time with (default 1, on the thread's CPU clock; N > 1 on the
            wall clock).
        runtime: ``"eager"``, ``"compiled"`` or ``"onnxruntime"``: what whole models are timed in.
        base: the predictor to calibrate (default: the shipped one nearest this device).
        cache: read and write the calibration cache (``$SPARSEVIT_CACHE``).
        refresh: measure again even when the cache holds this key, and replace the entry.
        call: how a whole model is run: None, a method name or ``call(model, x)``.
        progress: show a progress bar while measuring.
        time_limit: the most seconds to measure (default: 200 dense forwards, at least 60
            and at most 120).

    Returns:
        The calibrated :class:`LatencyPredictor` (``hw`` ``"local"``): its ``expected_error`` is
        the cross-validated error on the whole models measured here, and ``rest_for`` prices the
        rest of a whole model.

    Raises:
        ValueError: an input shape the model refuses, a stage depth that is odd (block pairs are
            timed), ``threads`` < 1, or a runtime that cannot be timed on that clock.
        TypeError: ``model`` holds no window-sparse Swin.
    """
    started = time.monotonic()  # the time limit counts the whole call
    backbone = sparse_backbone(model)
    shape = check_input_shape(input_shape_for(model, input_shape), backbone.in_chans)
    arch = backbone.architecture
    arch.check_fits(shape, fix="a smaller input shape (--resolution)")
    dtype = dtype_name(dtype)
    if any(d % 2 for d in backbone.depths):
        raise ValueError(f"calibration times block pairs, so every stage depth must be even; got {backbone.depths}")
    dev = resolve_device(device)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    threads = threads or (1 if dev.type == "cpu" else None)
    # the thread CPU clock where one thread does all the work (not ONNX Runtime's own threads)
    clock = "cpu" if dev.type == "cpu" and threads == 1 and runtime != "onnxruntime" else "wall"
    check_runtime(runtime, clock)
    fingerprint = device_fingerprint(dev, hw=LOCAL, threads=threads, clock=clock)
    forward = ModelForward(model, call)
    whole = None if forward.is_backbone else forward.key()
    key = cache_fields(fingerprint, arch, shape, dtype, runtime, whole)
    path = cache_dir() / f"{cache_key(key)}.json"
    if cache and not refresh and path.is_file():
        try:
            cached = LatencyPredictor.load(path)
        except DocumentError as err:  # written by another sparsevit-sdk version: measure again, replace it
            logger.info("not reusing the calibration in %s (%s); measuring again", path, err)
        else:
            if cached.learned_.calibration.get("cache_key") == key:
                logger.info("latency predictor for this %s, %s at %s: reusing the calibration in %s",
                            fingerprint["name"], arch.signature, "x".join(map(str, shape)), path)
                if dev.type == "cpu":
                    _same_machine(cached, clock)
                return _checked(cached, path)
            logger.warning("the calibration cached in %s was not written for this device, model and input (it "
                           "holds %s, expected %s); measuring again and replacing it", path,
                           cached.learned_.calibration.get("cache_key"), key)
    base = base if base is not None else nearest_shipped(fingerprint)
    logger.info("calibrating the %s predictor to this %s (%s, %s threads, %s) at input %s; cached in %s",
                base.hw, fingerprint["name"], dtype, fingerprint["threads"], runtime, "x".join(map(str, shape)), path)
    document = calibrate_here(base, model, shape, dev, dtype=dtype, threads=threads, clock=clock, runtime=runtime,
                              call=call, hw=LOCAL, time_limit=time_limit, progress=progress,
                              started=started).to_dict()
    document["calibration"]["cache_key"] = key  # what the entry is for, checked when it is read
    # which calibration a result used, named in its summary: the same seed on the same one gives the same search
    document["calibration"].update(entry=path.name, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if cache:
        _keep(path, document)
    return _checked(LatencyPredictor.from_dict(document, source=str(path)), path)


def _checked(predictor: LatencyPredictor, path: Path) -> LatencyPredictor:
    """``predictor``, after saying once per calibration when it stopped short of its target or its held-out
    whole models were poor: a number off by its MAPE should not be read as a measurement."""
    error, calibration = predictor.expected_error, predictor.learned_.calibration
    if error is None or not (error["poor"] or calibration.get("met") is False):
        return predictor
    figure = (f"{error['within_10']:.0f} % of {error['models']} whole models within ±10 % (MAPE {error['mape']:.1f} %, "
              f"{error['how']})")
    if calibration.get("met") is False:
        said = (f"this calibration stopped at its time limit ({calibration['time_limit_s']:.0f} s) short of its target "
                f"({calibration['target_within_10']:.0f} % within ±10 % of at least {MIN_MODELS} whole models): it "
                f"predicts {figure}. A longer for_device(..., time_limit=...) measures more models")
    else:
        said = f"this calibration predicts only {figure}. Measure again"
    warn_once(logger, f"poor {path}", "%s; expect predictions off by about that much. On a quieter machine, "
              "for_device(..., refresh=True) measures again (one thread is steadiest); SearchResult.validate() "
              "measures what was predicted", said)
    return predictor


def _same_machine(predictor: LatencyPredictor, clock: str) -> None:
    """Say when this machine runs the reference probe more than :data:`CHANGED` slower or faster than when
    ``predictor`` was calibrated: every prediction assumes the machine as it was then."""
    calibration = predictor.learned_.calibration
    if "probe_ms" not in calibration:
        return
    now, ratio = speed_change(calibration["probe_ms"], clock)
    if abs(ratio - 1) > CHANGED:
        logger.warning(
            "this machine runs a fixed reference workload %.0f %% %s than when this calibration was measured (%s: "
            "%.3g ms, now %.3g ms): its predictions assume the machine as it was then. If other work is running, "
            "wait for it; if the machine changed, measure again with for_device(..., refresh=True)",
            abs(ratio - 1) * 100, "slower" if ratio > 1 else "faster", calibration.get("created", "earlier"),
            calibration["probe_ms"], now)


def _keep(path: Path, document: dict) -> None:
    """Cache a calibration.  One that cannot be kept (a full disk, a cache path that is no folder) is
    still the user's: it is returned all the same, with one warning saying why it was not kept."""
    try:
        write_json(path, document, separators=(",", ":"))
    except OSError as err:
        logger.warning("this calibration is used but not cached: %s. The next call will measure again; free "
                       "space there, or set SPARSEVIT_CACHE to a writable folder (or pass cache=False)", err)
