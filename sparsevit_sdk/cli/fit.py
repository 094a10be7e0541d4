"""``sparsevit-fit``: profile datasets of one device → a latency predictor file.

    sparsevit-fit --profiles profiles/cpu --out predictors/cpu.json
    sparsevit-fit --profiles run1/orin --profiles run2/orin --out predictors/jetson-orin.json

Datasets are merged (a measurement taken twice keeps its latest row) and must hold one
device fingerprint: pick one with ``--fingerprint ID``, allow several with
``--mix-fingerprints`` (identical boards), or fit one predictor per fingerprint with
``--per-fingerprint`` (a profiling fleet's datasets; ``--out`` is then a folder of ``<hw>.json``):

    sparsevit-fit --profiles fleet/ --per-fingerprint --out predictors/

Prints how right the predictor is on the whole-model rows it was not fitted on, next to
the FLOPs-proportional and lookup-table baselines (``--plot fit.png`` draws them).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..dataset.files import load_profiles
from ..dataset.merge import merge_profiles, select_device
from ..dataset.schema import SchemaError
from ..predictor import format_report, plot_held_out
from ..predictor.latency import LatencyPredictor
from ..predictor.rows import STATISTICS
from ._args import check_output, fraction


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsevit-fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profiles", action="append", required=True,
                   help="dataset folder or .parquet file of one device; repeat for several")
    p.add_argument("--out", required=True, help="predictor file to write, e.g. predictors/cpu.json")
    p.add_argument("--fingerprint", metavar="ID", help="fit only the rows of this device fingerprint")
    p.add_argument("--mix-fingerprints", action="store_true",
                   help="fit one predictor over several device fingerprints (interchangeable devices)")
    p.add_argument("--per-fingerprint", action="store_true",
                   help="fit one predictor per device fingerprint, written as <hw>.json into the folder --out")
    p.add_argument("--statistic", choices=("auto", *STATISTICS), default="auto",
                   help="measured statistic to fit (default: p10_ms on a CPU, the median on a GPU)")
    p.add_argument("--overhead-fraction", type=fraction(), default=0.25,
                   help="share of whole-model rows that fit the overhead, in (0, 1); the rest judge the predictor "
                        "(default: 0.25)")
    p.add_argument("--n-estimators", type=int, default=300)
    p.add_argument("--max-depth", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="PNG", help="also draw predicted vs measured ms of the held-out whole models")
    return p


def _outputs(df: pd.DataFrame, args: argparse.Namespace) -> dict[str | None, Path]:
    """The predictor file of each fingerprint to fit (None: the one fingerprint, or all mixed)."""
    if not args.per_fingerprint:
        return {args.fingerprint: Path(args.out)}
    labels = {fp: ", ".join(sorted(hws)) for fp, hws in df.groupby("fingerprint_id")["hw"].unique().items()}
    clashes = [f"{fp} (hw {hw})" for fp, hw in labels.items() if "," in hw or list(labels.values()).count(hw) > 1]
    if clashes:
        raise ValueError("--per-fingerprint names each predictor by its rows' hw, but these fingerprints share or "
                         f"mix hw names: {'; '.join(clashes)}; fit them one at a time with --fingerprint ID --out FILE")
    return {fp: Path(args.out) / f"{hw}.json" for fp, hw in labels.items()}


def _fit(df: pd.DataFrame, fingerprint: str | None, out: Path, args: argparse.Namespace) -> None:
    """Fit, write and report the predictor of ``fingerprint``'s rows of ``df``."""
    df, sidecar = select_device(df, fingerprint=fingerprint, mix=args.mix_fingerprints)
    predictor = LatencyPredictor(statistic=args.statistic, overhead_fraction=args.overhead_fraction,
                                 n_estimators=args.n_estimators, max_depth=args.max_depth,
                                 random_state=args.seed).fit(df, fingerprint=sidecar)
    path = predictor.save(out)
    m = predictor.learned_.metrics
    scales = ", ".join(f"{kind} {s:.3f}" for kind, s in predictor.learned_.scale.items())
    print(f"wrote {path}: {predictor!r}, overhead {predictor.learned_.overhead_ms:.3f} ms, whole-model scale {scales}")
    if m:
        print(f"\nheld-out whole-model configs ({m['statistic']}; {m['excluded']} fitted the overhead):\n")
        print(format_report({"xgboost (per layer)": m["xgboost"], "FLOPs-proportional": m["flops"],
                             "lookup table": m["lookup"]}))
    if args.plot:
        plot_held_out(predictor, df, args.plot)
        print(f"wrote {args.plot}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.per_fingerprint and (args.fingerprint or args.mix_fingerprints or args.plot):
            raise ValueError("--per-fingerprint fits every fingerprint into its own file; leave out --fingerprint, "
                             "--mix-fingerprints and --plot (or fit one device with --fingerprint ID --plot PNG)")
        check_output("--out", None if args.per_fingerprint else args.out)  # before the work, not after it
        check_output("--plot", args.plot)
        df = merge_profiles([load_profiles(path) for path in args.profiles])
        outputs = _outputs(df, args)
        check_output("--out", *outputs.values())  # the per-fingerprint files, now that they have names
        for fingerprint, out in outputs.items():
            _fit(df, fingerprint, out, args)
    except (OSError, SchemaError, ValueError) as err:
        print(f"sparsevit-fit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsevit-fit: interrupted; nothing was written, run it again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
