"""Does the speed-up hold on real hardware?  Time the dense model and a search's best config
with the real sparse kernels and set the measurements beside what was predicted."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
import torch.nn as nn

from ..config import SparsityConfig
from ..dataset.fingerprint import device_mismatch, stored_fingerprints
from ..dataset.schema import stable_statistic
from ..devices import resolve_device
from ..profiler.fingerprint import device_fingerprint
from ..profiler.forward import Call, ModelForward, RestOfModel, backbone_calls
from ..profiler.reference import CHANGED, speed_change
from ..profiler.timing import num_threads, time_callable
from ..runtimes import allows_cpu_clock, check_runtime, runtime_call
from ..sparse.convert import set_sparsity
from ..sparse.state import preserved

UNSTEADY = 1.25  # slowest / fastest validation round above which the report says the machine was disturbed


class Searched(Protocol):
    """What validation reads of a search's result (:class:`~.result.SearchResult` has it)."""

    best: SparsityConfig
    predicted_ms: float
    dense_predicted_ms: float
    hw: str
    estimated: bool
    input_shape: tuple[int, ...]
    predictor_info: dict[str, Any]
    model: nn.Module | None
    rest: RestOfModel
    call: str

    @property
    def backbone_predicted_ms(self) -> float: ...

    @property
    def backbone_dense_predicted_ms(self) -> float: ...


@dataclass(frozen=True)
class ValidationReport:
    """Measured dense vs sparse latency of the best config, next to what was predicted, for the
    whole model as it is called (``call``) and for its backbone alone, timed in the same rounds.

    ``dense_ms``/``sparse_ms`` (the whole model) and ``backbone_dense_ms``/``backbone_sparse_ms``
    are the lowest ``statistic`` over ``rounds`` (rounds alternate dense and sparse, model and
    backbone, so drift hits all alike; load on a shared machine only ever slows a round down,
    so the fastest round is the one to trust).  For a model that is only a backbone the two are
    one measurement (``whole`` False).  ``comparable`` is False when the predictions were not
    made for this device (another target, an estimate, or another CPU): the measured speed-up
    still shows the kernels work, but measured vs predicted ms then says nothing about the
    predictor.
    """

    device: str
    hw: str
    statistic: str
    threads: int
    clock: str
    dense_ms: float
    sparse_ms: float
    dense_predicted_ms: float
    predicted_ms: float
    dense_rounds_ms: tuple[float, ...]
    sparse_rounds_ms: tuple[float, ...]
    comparable: bool
    note: str
    runtime: str = "eager"
    call: str = "model(x)"
    whole: bool = False
    backbone_dense_ms: float = 0.0
    backbone_sparse_ms: float = 0.0
    backbone_dense_predicted_ms: float = 0.0
    backbone_predicted_ms: float = 0.0
    expected_mape: float | None = None  # the predictor's held-out error (%): the band a prediction carries
    # the reference probe now over its time at calibration (None: not a calibration of this CPU)
    machine_speed: float | None = None

    @property
    def inside_band(self) -> bool | None:
        """Whether both measured latencies fell within the predictor's expected error of their predictions
        (None where the predictions were not made for this device, or carry no figure)."""
        if not self.comparable or self.expected_mape is None:
            return None
        band = max(self.expected_mape, 1.0) / 100  # a percent is below what any CPU clock repeats to
        return all(abs(m / p - 1) <= band for m, p in ((self.sparse_ms, self.predicted_ms),
                                                       (self.dense_ms, self.dense_predicted_ms)))

    @property
    def spread(self) -> float:
        """Slowest over fastest round of the sparse model: near 1 on a quiet machine; well above, the
        rounds were disturbed and the fastest is the one reported."""
        return max(self.sparse_rounds_ms) / min(self.sparse_rounds_ms)

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.sparse_ms

    @property
    def predicted_speedup(self) -> float:
        return self.dense_predicted_ms / self.predicted_ms

    @property
    def backbone_speedup(self) -> float:
        return self.backbone_dense_ms / self.backbone_sparse_ms

    @property
    def backbone_predicted_speedup(self) -> float:
        return self.backbone_dense_predicted_ms / self.backbone_predicted_ms

    @property
    def ratio(self) -> float:
        """Measured / predicted latency of the sparse model (1.0 is a perfect prediction)."""
        return self.sparse_ms / self.predicted_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": self.speedup, "predicted_speedup": self.predicted_speedup,
                "backbone_speedup": self.backbone_speedup,
                "backbone_predicted_speedup": self.backbone_predicted_speedup, "ratio": self.ratio}

    def __str__(self) -> str:
        what = f"{self.call} end to end" if self.whole else "dense"
        lines = [
            f"validation on {self.device} in {self.runtime} ({self.threads} threads, {self.clock} clock, "
            f"{self.statistic}):",
            f"  measured  {what} {self.dense_ms:.3f} ms, sparse {self.sparse_ms:.3f} ms -> {self.speedup:.2f}x",
            f"  predicted {what} {self.dense_predicted_ms:.3f} ms, sparse {self.predicted_ms:.3f} ms -> "
            f"{self.predicted_speedup:.2f}x on {self.hw}",
        ]
        if self.whole:
            lines += [
                f"  measured  backbone {self.backbone_dense_ms:.3f} ms, sparse {self.backbone_sparse_ms:.3f} ms -> "
                f"{self.backbone_speedup:.2f}x",
                f"  predicted backbone {self.backbone_dense_predicted_ms:.3f} ms, sparse "
                f"{self.backbone_predicted_ms:.3f} ms -> {self.backbone_predicted_speedup:.2f}x",
            ]
        if self.comparable:
            band = "" if self.inside_band is None else (
                f" ({'inside' if self.inside_band else 'OUTSIDE'} the predictor's ± {self.expected_mape:.1f} %)")
            lines.append(f"  measured / predicted: sparse {self.ratio:.2f}, dense "
                         f"{self.dense_ms / self.dense_predicted_ms:.2f}{band}")
        if self.machine_speed is not None and abs(self.machine_speed - 1) > CHANGED:
            lines.append(f"  this machine ran a fixed reference workload {abs(self.machine_speed - 1):.0%} "
                         f"{'slower' if self.machine_speed > 1 else 'faster'} than when the predictor was calibrated: "
                         "the predictions assume the machine as it was then")
        if self.spread > UNSTEADY:
            lines.append(f"  rounds spread {self.spread:.2f}x (slowest / fastest): the machine was busy or changing "
                         "speed; the fastest round is reported, run again on a quieter machine to confirm")
        lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def validate_result(result: Searched, device: str = "cpu", *, model: nn.Module | None = None, repeats: int = 20,
                    warmup: int = 5, rounds: int = 3, threads: int | None = None,
                    clock: str | None = None, runtime: str | None = None, call: Call = None) -> ValidationReport:
    """Time the dense and the best config on ``device`` with the real sparse kernels, in ``runtime``
    ("eager", "compiled" or "onnxruntime": each config compiled or exported once, then timed;
    default: the runtime the predictor was made for): the whole model as the search ran it
    (``call``: pass the same one when it was a callable) and its backbone, side by side.

    On a CPU, ``threads`` and ``clock`` (``"wall"`` or ``"cpu"``, see ``time_callable``)
    default to how the predictor's data was measured, when known, so measured and
    predicted ms are like for like (ONNX Runtime is always timed on the wall clock).  The
    model is timed in fp32 on ``device`` and left as it was (sparsity, every module's mode,
    device, dtype, each tensor bit for bit), on error and Ctrl-C too.
    """
    model = model if model is not None else result.model
    if model is None:
        raise ValueError("this result has no model attached (it was loaded from a file); pass the model it was "
                         "searched for: result.validate(device, model=model)")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    forward = ModelForward(model, call)
    if forward.describe != result.call:
        raise ValueError(f"the search predicted the model run as {result.call}, not {forward.describe}; pass the "
                         "same call= to validate")
    backbone = forward.backbone
    result.best.check_model(backbone.signature)
    dev = resolve_device(device)
    predicted_runtime = result.predictor_info.get("runtime", "eager")
    runtime = runtime or predicted_runtime
    threads, clock = timing_settings(result.predictor_info, dev, runtime, threads, clock)
    statistic = stable_statistic(dev)
    dense_cfg = SparsityConfig((0.0,) * len(result.best.ratios), result.best.signature, result.best.granularity)
    parts = ("model",) if forward.is_backbone else ("model", "backbone")
    rows = time_rounds(forward, [dense_cfg, result.best], result.input_shape, dev, parts=parts, runtime=runtime,
                       threads=threads, clock=clock, warmup=warmup, repeats=repeats, rounds=rounds)
    fingerprints = stored_fingerprints(result.predictor_info.get("fingerprint"))
    calibrated = (result.predictor_info.get("calibration") or {}).get("probe_ms")
    comparable, note = _comparability(result, fingerprints, device_fingerprint(dev, threads=threads, clock=clock))
    if runtime != predicted_runtime:
        comparable, note = False, (f"measured in {runtime}, predicted for {predicted_runtime}: compare the "
                                   f"speed-ups; {note}")
    if result.rest.source == "estimated":
        note += f"; the rest of the model is {result.rest.note}"
    part = "model" if forward.is_backbone else "backbone"
    return ValidationReport(
        device=str(dev), hw=result.hw, statistic=statistic, threads=threads, clock=clock,
        dense_ms=min(rows["model", dense_cfg]), sparse_ms=min(rows["model", result.best]),
        dense_predicted_ms=result.dense_predicted_ms, predicted_ms=result.predicted_ms,
        dense_rounds_ms=tuple(rows["model", dense_cfg]), sparse_rounds_ms=tuple(rows["model", result.best]),
        comparable=comparable, note=note, runtime=runtime, call=forward.describe, whole=not forward.is_backbone,
        backbone_dense_ms=min(rows[part, dense_cfg]), backbone_sparse_ms=min(rows[part, result.best]),
        backbone_dense_predicted_ms=result.backbone_dense_predicted_ms,
        backbone_predicted_ms=result.backbone_predicted_ms,
        expected_mape=(result.predictor_info.get("expected_error") or {}).get("mape"),
        machine_speed=speed_change(calibrated, clock)[1] if comparable and calibrated and dev.type == "cpu" else None,
    )


def timing_settings(predictor_info: dict[str, Any], dev: torch.device, runtime: str, threads: int | None,
                    clock: str | None) -> tuple[int, str]:
    """The threads and clock to time on: as given, else as the predictor's data was measured (on a CPU,
    its one thread count, and its thread CPU clock where the runtime allows), so measured and predicted
    ms are like for like (ONNX Runtime is always timed on the wall clock)."""
    fingerprints = stored_fingerprints(predictor_info.get("fingerprint"))
    fitted_threads = predictor_info.get("threads") or []
    if threads is None and dev.type == "cpu" and len(fitted_threads) == 1:
        threads = int(fitted_threads[0])
        if not 1 <= threads <= (os.cpu_count() or 1):  # a number from a file steers the machine: bound it
            raise ValueError(f"the result says its predictor was measured with {threads} threads "
                             f"(predictor_info.threads), and this machine has {os.cpu_count()} CPUs; pass "
                             "threads=N to validate with N")
    threads = threads or torch.get_num_threads()
    fitted_clocks = {fp.get("clock") for fp in fingerprints}
    if clock is None:
        clock = "cpu" if dev.type == "cpu" and threads == 1 and fitted_clocks == {"cpu"} and allows_cpu_clock(runtime) \
            else "wall"
    check_runtime(runtime, clock)
    return threads, clock


def time_rounds(forward: ModelForward, configs: list[SparsityConfig], input_shape: tuple[int, ...],
                dev: torch.device, *, parts: tuple[str, ...] = ("model",), runtime: str, threads: int, clock: str,
                warmup: int, repeats: int, rounds: int) -> dict[tuple[str, SparsityConfig], list[float]]:
    """Per (part, config), the stable statistic of each of ``rounds`` rounds: ``"model"`` is the whole
    model as called, ``"backbone"`` its backbone at the shapes the model calls it with.  Rounds alternate
    every part and config, so drift hits all alike; each config is compiled or exported once, outside the
    timed calls.  The model is timed in fp32 and left as it was (on error and Ctrl-C too)."""
    backbone, statistic = forward.backbone, stable_statistic(dev)
    rows: dict[tuple[str, SparsityConfig], list[float]] = {(p, c): [] for c in configs for p in parts}
    with preserved(forward.model, training=False, device=dev, dtype=torch.float32), num_threads(threads), \
            torch.no_grad():
        x = torch.randn(input_shape, device=dev)
        shapes = forward.probe(x)  # the backbone is timed as the model calls it: each call at its shape
        calls = {}
        for part, cfg in rows:
            set_sparsity(backbone, cfg)
            calls[part, cfg] = (backbone_calls(backbone, shapes, x, runtime, threads=threads) if part == "backbone"
                                else runtime_call(forward, x, runtime, threads=threads))
        for _ in range(rounds):
            for (part, cfg), values in rows.items():
                set_sparsity(backbone, cfg)
                stats = time_callable(calls[part, cfg], dev, warmup=warmup, repeats=repeats, threads=threads,
                                      clock=clock)
                values.append(getattr(stats, statistic))
    return rows


def _comparability(result: Searched, fingerprints: list[dict], here: dict) -> tuple[bool, str]:
    """Whether the measuring device (``here``) is the one the predictions were made for, and why."""
    if result.estimated:
        return False, (f"{result.hw} latencies are estimated from published specs, and this run measured "
                       f"{here['device']}: compare the speed-ups, not the milliseconds; profile the target with "
                       "`sparsevit-profile` to get a measured predictor")
    why = device_mismatch(here, fingerprints)
    if why is None:
        return True, f"measured on the device the {result.hw} predictor was fitted on"
    return False, (f"this {here['device']} is not the device the {result.hw} predictor was fitted on "
                   f"({why}); measured vs predicted ms does not judge the predictor here. Search with "
                   f"hw=\"local\" (or for_device) to calibrate a predictor on this device")
