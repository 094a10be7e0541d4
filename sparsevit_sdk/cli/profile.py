"""``sparsevit-profile``: measure per-layer and whole-model latency into a dataset.

    sparsevit-profile --device cpu --hw cpu --model swin_t --resolution 672x672 \\
        --batch 1 --dtype fp32 --out profiles/

Rows go to ``<out>/<hw>/<model>.parquet`` next to ``<out>/<hw>/fingerprint.json``; a model
given as ``module:function`` is named ``module.function`` (two modules' ``build`` keep two files).

With ``--ray-address ADDR --hw NAME`` the sweep runs on the node of that Ray cluster that
advertises the custom resource NAME (a profiling fleet; needs ``pip install 'sparsevit-sdk[ray]'``)
and the rows are written here.  Repeat ``--hw`` to profile several device nodes in parallel,
each into its own dataset (``--device`` and ``--threads`` once for all, or once per ``--hw`` in order):

    sparsevit-profile --ray-address auto --hw jetson-orin --hw pi5 --device cuda:0 --device cpu \\
        --threads 1 --threads 4 --model swin_t --out profiles/
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Sequence

import torch.nn as nn

from ..arch import DTYPE_BYTES
from ..dataset.files import dataset_path, load_profiles
from ..profiler.fingerprint import default_hw
from ..profiler.remote import profile_fleet
from ..profiler.sweep import SweepSettings, profile_model
from ..profiler.timing import CLOCKS
from ._args import MODEL_HELP, check_output, input_shape, model_from, positive_int, resolution, user_model


def build_parser() -> argparse.ArgumentParser:
    full = SweepSettings()
    p = argparse.ArgumentParser(prog="sparsevit-profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", help="cpu or cuda:N (default: cpu); once, or once per --hw")
    p.add_argument("--hw", action="append",
                   help="target name, the dataset's folder (default: cpu, or the GPU's name); with --ray-address, "
                        "repeat for several device nodes, profiled in parallel")
    p.add_argument("--model", action="append", required=True,
                   help=f"{MODEL_HELP} (your whole model is then also timed as it is called, beside its backbone: "
                        "the rest of the model on this device); repeat for several")
    p.add_argument("--resolution", action="append", type=resolution, metavar="HxW",
                   help="input size, e.g. 672x672; repeat for several (default: the size each model declares, else "
                        "672x672)")
    p.add_argument("--batch", action="append", type=positive_int, help="batch size; repeat for several (default: 1)")
    p.add_argument("--dtype", choices=list(DTYPE_BYTES), default="fp32")
    p.add_argument("--out", default="profiles", help="dataset root folder (default: profiles)")
    p.add_argument("--quick", action="store_true", help="few repeats and configs: a smoke test in seconds")
    p.add_argument("--threads", type=positive_int, action="append",
                   help="CPU threads to time with (default: 1 on cpu); once, or once per --hw")
    p.add_argument("--clock", choices=list(CLOCKS), default="wall",
                   help="CPU timer: wall (perf_counter) or cpu (the thread's CPU time; for a shared, loaded "
                        "machine, needs --threads 1)")
    p.add_argument("--warmup", type=int, help=f"untimed calls before each measurement (default: {full.warmup})")
    p.add_argument("--repeats", type=positive_int,
                   help=f"timed calls per layer unit and round (default: {full.repeats})")
    p.add_argument("--model-repeats", type=positive_int,
                   help=f"timed calls per whole-model config and round (default: {full.model_repeats})")
    p.add_argument("--configs", type=int, dest="random_configs",
                   help=f"random non-uniform model configs per input shape (default: {full.random_configs})")
    p.add_argument("--rounds", type=positive_int,
                   help="passes over the sweep; each row keeps its quietest pass (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the config sampling and inputs")
    p.add_argument("--resume", action="store_true", help="skip measurements already in the dataset")
    p.add_argument("--note", default="", help="free text stored in the fingerprint sidecar")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="run on the Ray cluster at ADDR (e.g. ray://head:10001 or auto), on the node advertising "
                        "the custom resource --hw")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _settings(args: argparse.Namespace) -> SweepSettings:
    base = SweepSettings.quick() if args.quick else SweepSettings()
    overrides = {k: getattr(args, k) for k in ("warmup", "repeats", "model_repeats", "random_configs", "rounds")
                 if getattr(args, k) is not None}
    return dataclasses.replace(base, **overrides)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _devices(args: argparse.Namespace) -> dict[str, dict]:
    """Each --hw and its own sweep settings (device, threads), checked against the other flags."""
    if args.ray_address and not args.hw:
        raise ValueError("--ray-address needs --hw NAME: the custom resource of the node to profile on "
                         "(and the dataset's folder)")
    devices = args.device or ["cpu"]
    hws = args.hw or [default_hw(devices[0])]
    if len(hws) > 1 and not args.ray_address:
        raise ValueError("several --hw profile a fleet of device nodes: add --ray-address ADDR, or profile one device "
                         "here with one --hw")
    if len(set(hws)) < len(hws):
        raise ValueError(f"--hw names a device twice: {', '.join(hws)}")
    threads = args.threads or [None]
    return {hw: {"device": d, "threads": t}
            for hw, d, t in zip(hws, _each(hws, "--device", devices), _each(hws, "--threads", threads))}


def _each(hws: list[str], flag: str, values: list) -> list:
    """``values`` of ``flag``, one per --hw: given once (for all) or once per --hw."""
    if len(values) not in (1, len(hws)):
        raise ValueError(f"{flag} is given {len(values)} times for {len(hws)} --hw; give it once (for every device) "
                         "or once per --hw, in the same order")
    return values * len(hws) if len(values) == 1 else values


def _declared_resolution(model: str | nn.Module) -> tuple[int, ...]:
    """The ``(H, W)`` ``model`` declares, as every command's default (a built-in is built to ask it)."""
    return input_shape(model_from(model)[1] if isinstance(model, str) else model, None, None)[2:]


def _profile(args: argparse.Namespace) -> None:
    settings = _settings(args)
    devices = _devices(args)
    models = [user_model(text) for text in args.model]
    check_output("--out", *(dataset_path(args.out, hw, name) for name, _ in models for hw in devices))  # first
    for name, model in models:
        start = time.perf_counter()
        sweep = dict(resolutions=args.resolution or [_declared_resolution(model)], batches=args.batch or [1],
                     dtype=args.dtype, out=args.out, settings=settings, clock=args.clock, seed=args.seed,
                     resume=args.resume, note=args.note)
        if args.ray_address:
            if not isinstance(model, str):
                raise ValueError("--ray-address profiles built-in models by name; profile your own model on the "
                                 "node itself (sparsevit-profile --model module:function there)")
            new = profile_fleet(name, devices, address=args.ray_address, **sweep)
        else:
            (hw, own), = devices.items()
            new = {hw: profile_model(model, name=name, hw=hw, progress=not args.no_progress, **own, **sweep)}
        for hw, rows in new.items():
            path = dataset_path(args.out, hw, name)
            spread = (rows["p90_ms"] / rows["p10_ms"]).median() if len(rows) else float("nan")
            print(f"{name}: {len(rows)} new measurements in {time.perf_counter() - start:.0f} s (median p90/p10 "
                  f"{spread:.2f}); {path} holds {len(load_profiles(path))} rows")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` saves measured rows as Ctrl-C does
    try:
        _profile(args)
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"sparsevit-profile: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsevit-profile: interrupted; measured rows were saved, re-run with --resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
