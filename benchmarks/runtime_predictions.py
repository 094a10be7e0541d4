"""Latency predicted for the runtime a model ships in, then checked there.

For each runtime: calibrate a predictor on this CPU with whole models timed in that runtime
(``for_device(..., runtime=...)``, fresh, no cache), search Swin-T at 672 for a
0.6 budget against it, and validate the winner in the same runtime: measured vs predicted,
dense and sparse.  ``torch.compile`` is opt-in (``--runtimes eager compiled onnxruntime``):
the calibration compiles each of its 11 whole models once, and one swin_micro compile
already takes about 35 s on a 2-core CPU (tests/test_export.py).

    python benchmarks/runtime_predictions.py [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _results import now_utc, write_section

from sparsevit_sdk import SearchSession, build_model
from sparsevit_sdk.local import for_device
from sparsevit_sdk.profiler import device_fingerprint
from sparsevit_sdk.runtimes import RUNTIMES

SECTION = "## Deploy: predicted in the runtime"
SHAPE = (1, 3, 672, 672)


def one_runtime(runtime: str, budget: float) -> dict:
    model = build_model("swin_t")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SPARSEVIT_CACHE"] = cache
        start = time.perf_counter()
        predictor = for_device(model, SHAPE, "cpu", runtime=runtime)
        seconds = time.perf_counter() - start
    result = SearchSession(model, hw=predictor, runtime=runtime, latency_budget=budget, input_shape=SHAPE,
                           population=16, parents=4, generations=3, proxy_images=2, proxy_resolution=(224, 224),
                           progress=False, seed=0).run()
    report = result.validate("cpu", repeats=5, warmup=1, rounds=2)
    return {"seconds": seconds, "best": result.best, "report": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=["eager", "onnxruntime"])
    parser.add_argument("--budget", type=float, default=0.6)
    parser.add_argument("--results", type=Path, help="write the section into this markdown file")
    args = parser.parse_args()
    here = device_fingerprint("cpu", threads=1, clock="cpu")
    lines = [SECTION, "", f"Produced by `python benchmarks/runtime_predictions.py` on {now_utc()}, on a {here['name']} "
             f"(1 thread; fingerprint {here['fingerprint_id']}). Swin-T 672x672, budget {args.budget}.", "",
             "| runtime | calibration s | best config | predicted dense / sparse ms | measured dense / sparse ms | "
             "measured / predicted (dense, sparse) | comparable |", "|---|---:|---|---:|---:|---:|---|"]
    for runtime in args.runtimes:
        out = one_runtime(runtime, args.budget)
        r = out["report"]
        lines.append(f"| {runtime} | {out['seconds']:.0f} | {out['best']} | {r.dense_predicted_ms:.0f} / "
                     f"{r.predicted_ms:.0f} | {r.dense_ms:.0f} / {r.sparse_ms:.0f} | "
                     f"{r.dense_ms / r.dense_predicted_ms:.2f}, {r.ratio:.2f} | {r.comparable} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines + [""])
    print(text)
    if args.results:
        write_section(text, args.results)


if __name__ == "__main__":
    main()
