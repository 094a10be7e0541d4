"""Do latency predictions transfer to a CPU they were not fitted on?  Leave one device out.

Devices: the two measured CPU profiles shipped under ``profiles/`` (``cpu``: a 2-vCPU AMD
EPYC, ``intel-xeon-amx``: a 2-vCPU Intel Xeon with AVX-512/AMX, same protocol), and this
machine measured now in settings that behave as other devices (1 thread on the CPU clock, 2
threads on the wall clock, bf16 where the CPU has it).

1. **Whole device.** Fit on one profile, calibrate with n whole models of the other drawn
   over all its models and resolutions (with and without its unit rows), judge on a fixed
   set of that device's other whole models; n from 0 to 100, mean of ``--draws`` draws.
2. **At the deployment shape** (what ``hw="local"`` does). For each model and resolution of
   the other device: calibrate with its unit rows at that shape and n of its whole models
   there, judge on the rest there.  Spearman is per shape (pooled over shapes it only
   ranks the shapes), then averaged.
3. **This machine, live.** ``for_device`` on Swin-T at 672 (timed: the
   budget is 2 minutes), then ``--judge`` random configs it never saw, each timed in two
   passes keeping the quieter, as the calibration times its own.

    python benchmarks/transfer.py [--draws 5] [--judge 16] [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from _results import now_utc, write_section
from scipy.stats import spearmanr

from sparsevit_sdk import LatencyPredictor, build_model, measure_latency, search_space, set_sparsity
from sparsevit_sdk.dataset import load_profiles
from sparsevit_sdk.local import for_device
from sparsevit_sdk.profiler import device_fingerprint

SECTION = "## Latency transfer between devices"
LIVE_SECTION = "## Latency transfer: this machine, live"
DEVICES = {"cpu": "AMD EPYC", "intel-xeon-amx": "Intel Xeon"}
WHOLE_SIZES = (0, 5, 10, 25, 50, 100)
SHAPE_SIZES = (0, 5, 10, 15)
FIGURE = Path(__file__).with_name("transfer.png")


def scores(predicted: np.ndarray, measured: np.ndarray, shapes: np.ndarray) -> dict[str, float]:
    """±10 % and MAPE over every config; Spearman within each shape, averaged."""
    error = np.abs(predicted / measured - 1)
    rho = [spearmanr(predicted[shapes == s], measured[shapes == s])[0] for s in np.unique(shapes)
           if (shapes == s).sum() > 2]
    return {"within_10": 100 * float((error <= 0.1).mean()), "mape": 100 * float(error.mean()),
            "spearman": float(np.nanmean(rho)), "n": len(measured)}


def judge(predictor: LatencyPredictor, models: pd.DataFrame) -> dict[str, float]:
    held = predictor.held_out(models)
    shapes = (held["model"] + held["img_h"].astype(str)).to_numpy()
    return scores(held["predicted_ms"].to_numpy(), held[predictor.learned_.statistic].to_numpy(), shapes)


def mean_scores(results: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in results])) for k in results[0]}


def whole_device(base: LatencyPredictor, df: pd.DataFrame, draws: int) -> dict[tuple[str, int], dict]:
    models = df[df.layer == "model"].reset_index(drop=True)
    units = df[df.layer != "model"]
    order = np.random.default_rng(0).permutation(len(models))
    n_judge = max(len(models) - max(WHOLE_SIZES), len(models) // 4)
    judged, pool = models.iloc[order[:n_judge]], models.iloc[order[n_judge:]]
    out = {}
    for n in WHOLE_SIZES:
        if n > len(pool):
            continue
        for label, extra in [("whole models", units.iloc[:0]), ("whole models + all units", units)]:
            if n == 0 and extra.empty:
                out[label, n] = judge(base, judged)
                continue
            samples = [pool.sample(n, random_state=d) for d in range(draws if n else 1)]
            out[label, n] = mean_scores([judge(LatencyPredictor.calibrate(base, pd.concat([s, extra])), judged)
                                         for s in samples])
    return out


def deployment_shape(base: LatencyPredictor, df: pd.DataFrame, draws: int) -> dict[int, dict]:
    """Per (model, resolution): its units and n of its whole models; pooled scores per n."""
    rng = np.random.default_rng(0)
    collected: dict[int, list] = {n: [] for n in SHAPE_SIZES}
    for _, group in df.groupby(["model", "img_h"]):
        models = group[group.layer == "model"].reset_index(drop=True)
        units = group[group.layer != "model"]
        for _ in range(draws):
            order = rng.permutation(len(models))
            judged = models.iloc[order[max(SHAPE_SIZES):]]
            for n in SHAPE_SIZES:
                calibrated = LatencyPredictor.calibrate(base, pd.concat([units, models.iloc[order[:n]]]))
                held = calibrated.held_out(judged)
                collected[n].append(held.assign(draw=_))
    out = {}
    for n, parts in collected.items():
        held = pd.concat(parts)
        shapes = (held["model"] + held["img_h"].astype(str) + "/" + held["draw"].astype(str)).to_numpy()
        out[n] = scores(held["predicted_ms"].to_numpy(), held[base.learned_.statistic].to_numpy(), shapes)
    return out


def live(base: LatencyPredictor | None, threads: int, dtype: str, n_judge: int) -> dict:
    """Calibrate here on Swin-T 672 (fresh: no cache), then judge on configs it never saw."""
    model = build_model("swin_t")
    shape = (1, 3, 672, 672)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SPARSEVIT_CACHE"] = cache
        start = time.perf_counter()
        predictor = for_device(model, shape, "cpu", dtype=dtype, threads=threads, base=base)
        seconds = time.perf_counter() - start
    space = search_space(model)
    rng = np.random.default_rng(12345)  # not the calibration's seed
    configs = list(dict.fromkeys(space.sample(rng) for _ in range(n_judge)))
    clock = "cpu" if threads == 1 else "wall"
    passes = np.empty((2, len(configs)))
    for p in range(2):  # two passes, the quieter kept: how the calibration measured its rows
        for i, cfg in enumerate(configs):
            set_sparsity(model, cfg)
            passes[p, i] = measure_latency(model, shape, warmup=1, repeats=5, threads=threads, clock=clock,
                                           dtype=dtype).p10_ms
    predicted = predictor.predict_configs(model, shape, configs, dtype=dtype)
    one_pass = np.zeros(len(configs))
    return {"seconds": seconds, "base": predictor.learned_.calibration["base"], "cv": predictor.learned_.calibration,
            "ceiling": scores(passes[0], passes[1], one_pass),  # how well one measurement predicts another
            **scores(predicted, passes.min(axis=0), one_pass)}


def plot(curves: dict[str, dict[int, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, curve in curves.items():
        ax.plot(list(curve), list(curve.values()), marker="o", label=label)
    ax.axhline(90, color="grey", ls="--", lw=1)
    ax.set(xlabel="calibration whole models (n)", ylabel="held-out configs within ±10 % (%)", ylim=(0, 102),
           title="Few-shot transfer between two CPUs")
    ax.legend(fontsize=8)
    fig.savefig(path)
    plt.close(fig)


def table(rows: dict[str, dict]) -> list[str]:
    lines = ["| calibration | configs judged | ±10 % | MAPE % | Spearman ρ |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {m['n']:.0f} | {m['within_10']:.1f} | {m['mape']:.1f} | {m['spearman']:.3f} |"
              for k, m in rows.items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=3, help="random draws per calibration size (0: skip the profiles)")
    parser.add_argument("--judge", type=int, default=16, help="held-out configs timed live (0: skip the live part)")
    parser.add_argument("--results", type=Path, help="write the section into this markdown file")
    args = parser.parse_args()

    data = {name: load_profiles(Path("profiles") / name) for name in DEVICES}
    fitted = {name: LatencyPredictor.load(name) for name in DEVICES}
    here = device_fingerprint("cpu", threads=1, clock="cpu")
    header = (f"Produced by `python benchmarks/transfer.py --draws {args.draws} --judge {args.judge}` on "
              f"{now_utc()}, on a {here['name']} ({', '.join(here['isa'])}; fingerprint {here['fingerprint_id']}). "
              "Goal: ≥ 90 % of "
              "held-out whole-model configs within ±10 % and Spearman ≥ 0.95 on a CPU the predictor was not fitted "
              "on, after ≤ 2 minutes of calibration.")
    if args.draws:
        lines = [SECTION, "", header, ""]
        curves = {}
        for source, target in [("cpu", "intel-xeon-amx"), ("intel-xeon-amx", "cpu")]:
            title = f"fitted on {DEVICES[source]} → judged on {DEVICES[target]}"
            whole = whole_device(fitted[source], data[target], args.draws)
            shape = deployment_shape(fitted[source], data[target], args.draws)
            rows = {f"none (the {DEVICES[target]}'s own full-profile predictor, for reference)":
                    judge(fitted[target], data[target])}
            rows |= {f"{n} {label}": m for (label, n), m in whole.items()}
            rows |= {f"at each deployment shape: its units + {n} whole models": m for n, m in shape.items()}
            lines += [f"### {title}", "", *table(rows), ""]
            curves[f"{title}: whole device"] = {n: m["within_10"] for (label, n), m in whole.items()
                                                 if label == "whole models"}
            curves[f"{title}: at the deployment shape"] = {n: m["within_10"] for n, m in shape.items()}
        plot(curves, FIGURE)
        lines += [f"![transfer curves]({FIGURE.name})", ""]
        publish("\n".join(lines), args.results)

    if args.judge:
        settings = [("1 thread, CPU clock, fp32, calibrated from the AMD EPYC predictor", fitted["cpu"], 1, "fp32"),
                    ("2 threads, wall clock, fp32, from the nearest shipped predictor", None, 2, "fp32")]
        if "avx512_bf16" in here["isa"] or "amx_bf16" in here["isa"]:
            settings.append(("1 thread, CPU clock, bf16, from the nearest shipped predictor", None, 1, "bf16"))
        rows, seconds = {}, []
        for label, base, threads, dtype in settings:
            result = live(base, threads, dtype, args.judge)
            rows[label] = result
            rows[f"{label.split(',')[0]}, {dtype}: the first timing pass judged by the second"] = result["ceiling"]
            seconds.append(f"{label.split(',')[0]}, {dtype}: {result['seconds']:.0f} s "
                           f"(cross-validated on its own whole models: {result['cv']['cv_within_10']:.0f} % within "
                           f"±10 %, curve weight {result['cv']['curve_weight']})")
        publish("\n".join([LIVE_SECTION, "", header, "",
                           "Swin-T 672, `for_device`: each setting calibrated fresh, then judged "
                           f"on {args.judge} random configs it never saw, each timed in two passes (the quieter "
                           "kept).", "",
                           *table(rows), "", "Calibration wall time (budget 120 s): " + "; ".join(seconds) + ".", ""]),
                args.results)


def publish(text: str, results: Path | None) -> None:
    print(text, flush=True)
    if results:
        write_section(text, results)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
