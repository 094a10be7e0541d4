"""Where latency is predicted: one answer to "which predictor, measured where, and how well".

A search, the rest of a whole model and the choice to time finalists each need the same facts about
the device a predictor answers for: the predictor itself, what the user named (``"local"``,
``"jetson-orin"``, a file), the runtime, threads and clock its latencies were timed with, whether
they were measured on this machine's CPU (and if not, why not), and the error it showed on whole
models held out of its fit.  :class:`Target` holds them, resolved once, so no caller works them out
again and no two callers can disagree::

    target = Target.resolve("cpu", model, (1, 3, 224, 224))
    target.measured_here, target.why_not_here, target.expected_error

It sits above :mod:`.local` (``"local"`` calibrates through :func:`~sparsevit_sdk.local.for_device`)
and below the search, which takes a ``Target`` as ``hw=`` like any name or predictor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch.nn as nn

from .calibration import dense_ms_now
from .dataset.fingerprint import device_mismatch, stored_fingerprints
from .hardware import list_hardware, looks_like_file
from .local import LOCAL, for_device
from .predictor.latency import LatencyPredictor
from .profiler.fingerprint import device_fingerprint
from .profiler.reference import CHANGED
from .sparse.convert import sparse_backbone

logger = logging.getLogger(__name__)

__all__ = ["Target", "fitted_elsewhere"]



def fitted_elsewhere(predictor: LatencyPredictor) -> tuple[str | None, dict | None]:
    """Whether ``predictor``'s latencies were measured on this machine's CPU.

    A CPU predictor fitted on one CPU is off by about 1.5x on another, so whoever prices latency
    here (the rest of a whole model, the finalists, a warning) must know; this is the one place
    that compares.

    Args:
        predictor: a fitted :class:`LatencyPredictor`.

    Returns:
        ``(why_not, here)``: why its measurements are not of this CPU (None: they are), and this
        CPU's fingerprint as compared, with the predictor's threads and clock (None for a spec
        estimate or a GPU's data: nothing here to compare with).
    """
    fitted = [fp for fp in stored_fingerprints(predictor.learned_.fingerprint) if fp.get("device_type") == "cpu"]
    if predictor.learned_.estimated or not fitted:
        return "its latencies are not measured on a CPU", None
    here = device_fingerprint("cpu", threads=max(predictor.learned_.threads), clock=fitted[0].get("clock", "wall"))
    return device_mismatch(here, fitted), here


def _calibrated_for_another(predictor: LatencyPredictor, model: nn.Module, input_shape: Sequence[int]) -> str | None:
    """The model and input a local calibration was measured at, where they are not ``model`` at ``input_shape``
    (its whole-model rows, and so its error figure, are of that pair); None where they are, or for a predictor
    that is no local calibration."""
    key = predictor.learned_.calibration.get("cache_key")
    if not key:
        return None
    signature, shape = sparse_backbone(model).signature, [int(v) for v in input_shape]
    if key.get("signature") == signature and list(key.get("input_shape", [])) == shape:
        return None
    return f"{key.get('signature')} at {'x'.join(str(v) for v in key.get('input_shape', []))}"


def _clock(predictor: LatencyPredictor) -> str:
    """The clock the predictor's data was timed on: its CPU fingerprint's, else its first one's, else the wall."""
    stored = [fp for fp in stored_fingerprints(predictor.learned_.fingerprint) if "device_type" in fp]
    cpu = [fp for fp in stored if fp["device_type"] == "cpu"]
    return str((cpu or stored or [{}])[0].get("clock", "wall"))


@dataclass(frozen=True)
class Target:
    """The device a search predicts latency for, resolved once: its predictor and what is known of it.

    Made by :meth:`resolve` from whatever ``hw=`` accepts; every field is read from the predictor
    then, so the facts a search reports (measured here or not, its expected error) are the ones
    its latencies came from.

    Attributes:
        predictor: the fitted :class:`LatencyPredictor` that prices configs, in ms.
        name: what the user asked for: ``"local"``, a target name (``"jetson-orin"``), a file
            path, or the predictor's own ``hw`` when a predictor was given.
        runtime: what its latencies are of: ``"eager"``, ``"compiled"`` or ``"onnxruntime"``.
        threads: the CPU threads its data was timed with (the most, if several).
        clock: the clock its data was timed on: ``"cpu"`` (the thread's CPU time) or ``"wall"``.
        why_not_here: why its latencies are not measured on this machine's CPU; None: they are.
        here: this CPU's fingerprint as compared (with ``threads`` and ``clock``); None for a
            spec estimate or a GPU's data.
        expected_error: its error on whole models held out of its fit (``within_10`` %, ``mape``
            %, ``models``, ``how``, ``poor``); None for a spec estimate.  A calibration made for another
            model or input shape (see ``calibrated_for``) is marked poor: its figure is of that one.
        calibrated_for: the model and input a local calibration was measured at, where they are not
            this model's (None: they are, or it is no local calibration).
    """

    predictor: LatencyPredictor
    name: str
    runtime: str
    threads: int
    clock: str
    why_not_here: str | None
    here: dict[str, Any] | None = field(default=None, repr=False)
    expected_error: dict[str, Any] | None = field(default=None, repr=False)
    calibrated_for: str | None = None

    @property
    def measured_here(self) -> bool:
        """Whether its latencies were measured on this machine's CPU: then what is timed here (the rest
        of a whole model, the finalists) is on the predictor's own scale."""
        return self.why_not_here is None

    @property
    def calibrated_here(self) -> bool:
        """Whether it was calibrated on this CPU (``hw="local"``, or that calibration passed on): the
        target whose winner a search measures before choosing it."""
        return self.predictor.hw == LOCAL and self.measured_here

    @classmethod
    def resolve(cls, hw: str | os.PathLike | LatencyPredictor | Target, model: nn.Module, input_shape: Sequence[int],
                *, runtime: str | None = None, progress: bool = True) -> Target:
        """The target ``hw`` names, with its predictor loaded, estimated or calibrated.

        Args:
            hw: a target name (:func:`~sparsevit_sdk.hardware.list_hardware`), ``"local"`` (this
                CPU: :func:`~sparsevit_sdk.local.for_device` measures for a minute or two, then
                reuses its cached calibration), the path of a predictor file, a fitted
                :class:`LatencyPredictor`, or a ``Target`` (returned as it is, unless it was judged for
                another model or input than these).
            model: the model latencies are predicted for; only ``"local"`` measures it.
            input_shape: the deployment input ``(B, C, H, W)`` in pixels; only ``"local"`` uses it.
            runtime: ``"eager"``, ``"compiled"`` or ``"onnxruntime"`` (None: the predictor's);
                ``"local"`` calibrates in it, and a predictor made for another is refused.
            progress: show a progress bar while ``"local"`` measures.

        Returns:
            The resolved :class:`Target`; nothing is logged (:meth:`warn_if_elsewhere` says what a
            user deploying here should know).

        Raises:
            ValueError: an unknown target name or a missing file (the message lists the names and
                the fixes), or a predictor for another runtime than ``runtime``.
            TypeError: ``hw`` is none of these.
        """
        if isinstance(hw, Target):
            cls._check_runtime(hw.predictor, runtime)
            if _calibrated_for_another(hw.predictor, model, input_shape) == hw.calibrated_for:
                return hw
            return replace(cls.resolve(hw.predictor, model, input_shape), name=hw.name)  # judged for this model
        if isinstance(hw, LatencyPredictor):
            name, predictor = hw.hw, hw
        elif not isinstance(hw, str | os.PathLike):
            raise TypeError(f"hw={hw!r} is not a target: pass a name ({', '.join(list_hardware())}), 'local', the "
                            "path of a predictor file, a LatencyPredictor or a Target")
        elif hw == LOCAL:
            name, predictor = LOCAL, for_device(model, input_shape, "cpu", runtime=runtime or "eager",
                                                progress=progress)
        elif isinstance(hw, os.PathLike) or looks_like_file(hw) or (hw not in list_hardware() and Path(hw).is_file()):
            if not Path(hw).is_file():
                raise ValueError(f"predictor file {str(hw)!r} not found; pass the path of a file "
                                 f"LatencyPredictor.save wrote, a target name ({', '.join(list_hardware())}) or "
                                 "'local' (calibrate on this CPU)")
            name, predictor = str(hw), LatencyPredictor.load(hw)
        else:
            name, predictor = hw, LatencyPredictor.for_hardware(hw)
        cls._check_runtime(predictor, runtime)
        why, here = fitted_elsewhere(predictor)
        learned, error = predictor.learned_, predictor.expected_error
        other = _calibrated_for_another(predictor, model, input_shape)
        if other is not None and error is not None:
            error = {**error, "poor": True, "how": f"{error['how']}, of {other}: not this model and input"}
        return cls(predictor=predictor, name=name, runtime=learned.runtime, threads=max(learned.threads, default=1),
                   clock=_clock(predictor), why_not_here=why, here=here, expected_error=error, calibrated_for=other)

    @staticmethod
    def _check_runtime(predictor: LatencyPredictor, runtime: str | None) -> None:
        """Refuse a predictor of another runtime: its latencies are not the ones the model will have."""
        if runtime is not None and runtime != predictor.learned_.runtime:
            raise ValueError(f"the {predictor.hw} predictor predicts {predictor.learned_.runtime} latencies, "
                             f"not {runtime}: search with hw='local', runtime={runtime!r} (calibrates one on this "
                             f"CPU in {runtime}) or pass hw=for_device(..., runtime={runtime!r})")

    def rechecked(self, model: nn.Module, input_shape: Sequence[int]) -> Target:
        """This target with its predictions re-levelled to the dense model timed now, where that ran more than
        ``CHANGED`` (10 %) off the calibration's own dense row; itself otherwise, or where it was not calibrated
        on this CPU for this model and input.

        A shared machine's speed drifts by up to 10-15 % between minutes (benchmarks/RESULTS.md): a calibration's
        speed-ups hold while its absolute milliseconds move with the machine, and the reference probe does not
        always see it.  The dense model itself is the surest probe; timing it costs a few forwards.  It is
        compared with the row the calibration measured (not with the fit's prediction, whose own error would
        pass for a change), and only a change beyond a busy machine's second-to-second swing (up to 7 % for
        swin_micro here) is acted on.

        Args:
            model: the model (or its sparse backbone) it was calibrated for, left as it was.
            input_shape: the input ``(B, C, H, W)`` it was calibrated at.

        Returns:
            The target, its predictor :meth:`~LatencyPredictor.releveled` by measured now / measured then
            where the two differ by more than 10 % (with a warning naming the change and the fix).
        """
        if not self.calibrated_here or self.calibrated_for is not None:
            return self
        backbone, calibration = sparse_backbone(model), self.predictor.learned_.calibration
        then = calibration.get("dense_ms", 0.0) * calibration.get("level", 1.0)  # on the predictor's scale now
        if not then > 0:  # a calibration that recorded no dense row: nothing measured to compare with
            return self
        measured = dense_ms_now(backbone, tuple(int(v) for v in input_shape), expected_ms=then, threads=self.threads,
                                clock=self.clock, runtime=self.runtime)
        factor = measured / then
        if abs(factor - 1) <= CHANGED:
            return self
        logger.warning("the dense model runs %.1f ms now, %.0f %% %s than when this predictor was calibrated "
                       "(%.1f ms): this machine's speed has changed; predictions are re-levelled to it (the speed-ups "
                       "stand). If it stays so, calibrate again (for_device(..., refresh=True))", measured,
                       abs(factor - 1) * 100, "slower" if factor > 1 else "faster", then)
        return replace(self, predictor=self.predictor.releveled(factor))

    def at_level(self, level: float) -> Target:
        """This target with its predictor re-levelled ``level`` times in all (:meth:`rechecked`'s record, as
        ``learned_.calibration["level"]``): a checkpointed search resumes on the scale it began with."""
        now = self.predictor.learned_.calibration.get("level", 1.0)
        return self if level == now else replace(self, predictor=self.predictor.releveled(level / now))

    def warn_if_elsewhere(self) -> None:
        """Warn when a CPU predictor was measured on another CPU than this one: it predicts that CPU's
        latencies, and a user deploying here should hear so, with the one-line fix.  A spec estimate or
        a GPU's data has nothing here to compare with, and says so in every result instead."""
        if self.calibrated_for is not None:
            logger.warning("this predictor was calibrated for %s; its held-out error says nothing of this model and "
                           "input, which it prices from its units alone: calibrate for them with hw='local' (or "
                           "for_device(model, input_shape)), then validate()", self.calibrated_for)
        if self.why_not_here is not None and self.here is not None:
            logger.warning("the %s predictor was measured on another CPU (%s); if this %s is where the model will "
                           "run, search with hw='local' to calibrate one here (a minute or two, then cached)",
                           self.predictor.learned_.hw, self.why_not_here, self.here["name"])
