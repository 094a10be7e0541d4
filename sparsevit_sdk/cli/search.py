"""``sparsevit-search``: per-layer window sparsity for a model, a target device and a budget.

    sparsevit-search --model swin_t --hw jetson-orin --budget 0.7 --out result.json --plot pareto.png

``--hw`` is a target name or a predictor file (e.g. one calibrated on your device).  ``--model``
is a built-in (randomly initialised) or ``module:function`` returning your model; either is scored
by the label-free agreement with the dense model; for task accuracy use the Python API with a proxy.
The input is the size the model declares unless ``--resolution`` says otherwise.

Scale out with ``--executor process`` (``--workers N``) or ``--executor ray``
(``--ray-address ADDR``); ``--checkpoint PATH`` saves every generation, and ``--resume`` (with
``--checkpoint PATH``, or ``--resume PATH``) ``--model NAME --out result.json`` (with the same
``--proxy-*`` options) continues an interrupted search, as ``sparsevit-profile --resume`` continues
its ``--out``.  A resumed search honours this run's ``--timeout-s``,
``--max-evaluations``, ``--patience``, ``--retries``, executor and output flags; the others are
the checkpoint's (budget, seed, strategy and its flags, ``--resolution``, ``--batch``,
``--runtime``), and one given with another value than the checkpoint's is refused, listed.

``--strategy`` picks how configs are proposed: ``ga`` (the default), ``nsga2`` (both take
``--population``, ``--parents``, ``--generations``, ``--mutation-prob``) or ``random``
(``--samples``, ``--generations``).

A search stops early after ``--timeout-s`` (default 600 s; ``none``: no limit),
``--max-evaluations`` proxy calls or ``--patience`` generations without a better score, and
says so.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..hardware import list_hardware
from ..predictor.latency import LatencyPredictor
from ..runtimes import RUNTIMES
from ..search import STRATEGIES, SearchSettings
from ..search.executors import EXECUTORS, resolve_executor
from ..search.resuming import SettingsDiffer
from ..search.session import SearchSession
from ..search.strategies import DEFAULT_STRATEGY
from ._args import (
    MODEL_HELP,
    RESOLUTION_HELP,
    check_output,
    fraction,
    hardware,
    input_shape,
    model_from,
    or_none,
    positive_float,
    positive_int,
    resolution,
)

DEFAULTS = SearchSettings  # the class's field defaults are the search's defaults
# each strategy's flags (None: the strategy's default), as its keyword arguments
STRATEGY_FLAGS = ("population", "parents", "generations", "mutation_prob", "samples")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsevit-search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--hw", type=hardware,
                   help=f"target ({', '.join(list_hardware())}), local (calibrate on this CPU, cached) or a "
                        "predictor .json file (default: cpu; with "
                        "--resume, the checkpoint's)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=fraction(one=True, hint="; for a budget in milliseconds use --budget-ms"),
                        help="latency budget as a fraction of dense latency, in (0, 1] (default: 0.7)")
    budget.add_argument("--budget-ms", type=positive_float, help="latency budget in milliseconds")
    p.add_argument("--resolution", type=resolution, metavar="HxW", help=RESOLUTION_HELP)
    p.add_argument("--batch", type=positive_int, help="batch size (default: 1)")
    p.add_argument("--proxy-images", type=positive_int, default=8, metavar="N",
                   help="images the label-free proxy scores each config on (default: 8)")
    p.add_argument("--proxy-resolution", type=resolution, metavar="HxW",
                   help="score configs on images of this size, latency still at --resolution: cheaper, but fewer "
                        "windows per stage make ratios coarser (default: --resolution)")
    p.add_argument("--out", required=True, help="result JSON file to write")
    p.add_argument("--plot", help="also draw the Pareto front and search progress to this image file")
    p.add_argument("--strategy", choices=list(STRATEGIES),
                   help="ga: a genetic algorithm for the best score under the budget; nsga2: the Pareto front; "
                        f"random: random configs under the budget, a baseline (default: {DEFAULT_STRATEGY})")
    p.add_argument("--generations", type=int, help="rounds after the first (default: 20)")
    p.add_argument("--population", type=int, help="ga, nsga2: configs per round (default: 100)")
    p.add_argument("--parents", type=int, help="ga, nsga2: the best that breed the next round (default: 25)")
    p.add_argument("--mutation-prob", type=float, help="ga, nsga2: per-gene mutation probability (default: 0.1)")
    p.add_argument("--samples", type=int, help="random: configs per round (default: 50)")
    p.add_argument("--seed", type=int, help=f"seed of the strategy's draws and the proxy's images (default: "
                                            f"{DEFAULTS.seed})")
    p.add_argument("--timeout-s", type=or_none(positive_float), default=DEFAULTS.timeout_s, metavar="SECONDS",
                   help=f"stop the search after this long (default: {DEFAULTS.timeout_s:g}; none: no limit)")
    p.add_argument("--max-evaluations", type=or_none(positive_int), metavar="N",
                   help="stop after N proxy evaluations, the two references included (default: none)")
    p.add_argument("--patience", type=or_none(positive_int), metavar="N",
                   help="stop once N generations in a row found no better score (default: none)")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="where proxy calls run (default: local)")
    p.add_argument("--workers", type=positive_int,
                   help="worker processes of --executor process (default: one per core)")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster of --executor ray (default: a local one)")
    p.add_argument("--retries", type=int, default=DEFAULTS.retries,
                   help=f"extra attempts of a failed proxy call (default: {DEFAULTS.retries})")
    p.add_argument("--checkpoint", metavar="PATH", help="save the search to PATH after every generation")
    p.add_argument("--resume", nargs="?", const=True, metavar="PATH",
                   help="continue an interrupted search from its --checkpoint file, or from PATH (search settings "
                        "come from it; one given that differs is refused)")
    p.add_argument("--runtime", choices=RUNTIMES,
                   help="what latencies are predicted (and validated) for; with --hw local the calibration times "
                        "whole models in it (default: the predictor's, eager for the shipped ones)")
    p.add_argument("--validate", metavar="DEVICE", help="then time dense vs best on DEVICE (cpu or cuda:N)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _given(args: argparse.Namespace, model: nn.Module) -> dict[str, Any]:
    """The settings a search is given by its flags (a flag not given: none), as SearchSession's keywords."""
    given = {"seed": args.seed, "latency_budget": args.budget, "budget_ms": args.budget_ms, "strategy": args.strategy,
             "runtime": args.runtime, **{k: getattr(args, k) for k in STRATEGY_FLAGS}}
    if args.batch is not None or args.resolution is not None:
        given["input_shape"] = input_shape(model, args.resolution, args.batch)
    return {k: v for k, v in given.items() if v is not None}


def _flag(name: str, value: Any) -> str:
    """A setting as the flags that give it."""
    if name == "input_shape":
        return f"--batch {value[0]} --resolution {value[2]}x{value[3]}"
    flag = "--budget" if name == "latency_budget" else f"--{name.replace('_', '-')}"
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.resume is True:  # a bare --resume continues this search's own --checkpoint
            if not args.checkpoint:
                raise ValueError("--resume continues the --checkpoint file: give --checkpoint PATH, or --resume PATH")
            args.resume = args.checkpoint
        for flag in ("--out", "--plot", "--checkpoint", "--resume"):  # before the search, not hours after it
            check_output(flag, getattr(args, flag[2:]))
        if args.resume and args.checkpoint and Path(args.checkpoint).resolve() != Path(args.resume).resolve():
            raise ValueError(f"--checkpoint {args.checkpoint}: a resumed search goes on writing its --resume file "
                             f"{args.resume}; leave --checkpoint out (or copy the file and resume the copy)")
        model = model_from(args.model)[1]
        hw = LatencyPredictor.load(args.hw) if args.hw is not None and Path(args.hw).is_file() else args.hw
        executor = resolve_executor(args.executor, workers=args.workers, address=args.ray_address)
        run = dict(executor=executor, retries=args.retries, progress=not args.no_progress,
                   proxy_images=args.proxy_images, proxy_resolution=args.proxy_resolution, timeout_s=args.timeout_s,
                   max_evaluations=args.max_evaluations, patience=args.patience)
        with contextlib.closing(executor) if executor is not None else contextlib.nullcontext():
            if args.resume:
                try:
                    session = SearchSession.resume(args.resume, model, hw=hw, **run, **_given(args, model))
                except SettingsDiffer as err:
                    raise ValueError(err.message(_flag)) from err
            else:
                session = SearchSession(model, "cpu" if hw is None else hw, checkpoint=args.checkpoint, **run, **{
                    "input_shape": input_shape(model, None, None), "strategy": DEFAULT_STRATEGY,
                    **_given(args, model)})
            result = session.run()
        print(result.summary())
        print(f"wrote {result.save(args.out)}")
        if args.plot:
            result.plot(args.plot)
            print(f"wrote {args.plot}")
        if args.validate:
            print(result.validate(args.validate))
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as err:
        print(f"sparsevit-search: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsevit-search: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
