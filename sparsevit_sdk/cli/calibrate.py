"""``sparsevit-calibrate``: a latency predictor for this device, measured here until it is good or its time
limit (a minute or two) passes.

    sparsevit-calibrate --model swin_t --resolution 672x672
    sparsevit-calibrate --model swin_t --resolution 672x672 --threads 2 --out swin_t_672_2t.json
    sparsevit-calibrate --model swin_t --resolution 1024x768 --device cuda:0
    sparsevit-calibrate --model swin_t --resolution 672x672 --runtime onnxruntime
    sparsevit-calibrate --model my_models:classifier          # your model, at the input it declares

Times every block pair at each grid sparsity and the small units, then whole models until the
predictor meets its target on held-out ones or ``--time-limit`` passes, of the model at that input;
calibrates the shipped predictor nearest this device, and keeps the result in the cache
(``$SPARSEVIT_CACHE``, default ``~/.cache/sparsevit_sdk``) where ``SearchSession(model, hw="local")`` and
``sparsevit-search --hw local`` find it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..arch import DTYPE_BYTES
from ..local import for_device
from ..predictor.latency import LatencyPredictor
from ..runtimes import RUNTIMES
from ..sparse.convert import search_space
from ._args import (
    MODEL_HELP,
    RESOLUTION_HELP,
    check_output,
    input_shape,
    model_from,
    positive_float,
    positive_int,
    resolution,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsevit-calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--resolution", type=resolution, metavar="HxW", help=RESOLUTION_HELP)
    p.add_argument("--batch", type=positive_int, help="batch size (default: 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    p.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="fp32")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads to time with (default 1, on the thread CPU clock; N > 1 on the wall clock)")
    p.add_argument("--runtime", choices=RUNTIMES, default="eager",
                   help="what the whole models are timed in: eager, compiled (torch.compile), onnxruntime")
    p.add_argument("--base", metavar="NAME_OR_JSON",
                   help="predictor to calibrate (default: the shipped one nearest this device)")
    p.add_argument("--time-limit", type=positive_float, metavar="S",
                   help="seconds to measure at most (default: 200 dense forwards, at least 60 and at most 120); "
                        "it stops sooner once 90 %% of held-out whole models are within ±10 %%")
    p.add_argument("--refresh", action="store_true", help="measure again and replace a cached calibration")
    p.add_argument("--out", metavar="JSON", help="also write the predictor to this file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        check_output("--out", args.out)
        name, model = model_from(args.model)
        base = None if args.base is None else LatencyPredictor.load(args.base)
        shape = input_shape(model, args.resolution, args.batch)
        predictor = for_device(model, shape, args.device, dtype=args.dtype, threads=args.threads,
                               runtime=args.runtime, base=base, refresh=args.refresh, time_limit=args.time_limit)
        if args.out:
            predictor.save(args.out)
    except (OSError, ValueError) as err:
        print(f"sparsevit-calibrate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsevit-calibrate: interrupted; nothing was cached or written, run it again", file=sys.stderr)
        return 130
    dense = predictor.predict_config(model, shape, search_space(model).dense())
    info = predictor.learned_.calibration
    checked = (f"; cross-validated on its {info['model_rows']} whole models: {info['cv_within_10']:.0f} % within "
               f"±10 %, MAPE {info['cv_mape']:.1f} %" if "cv_mape" in info else "")
    print(f"{predictor!r} calibrated from the {info['base']} predictor: {name} at {'x'.join(map(str, shape))} "
          f"predicted {dense:.1f} ms dense{checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
