"""How right is a fresh local calibration on this CPU?  Models x input shapes, each calibrated anew
(``for_device(..., cache=False)``), then hidden random configs timed interleaved on the real kernels
(one thread, thread CPU-clock, the quietest of the rounds) beside the predictions.

Reported per case: share of hidden configs predicted within ±10 %, share of predicted speed-ups
(dense / config) within ±10 % of the measured ones, the share within ±10 % after the level check a
search makes first (``Target.rechecked``: the dense model timed again, predictions re-levelled where it
ran > 10 % off the calibration's dense row), the calibration's own cross-validated figure (what every
prediction carries as ``expected_error``), the reference workload's time beside the hidden configs over its time at
calibration (does it move as the model does?), and the calibration's seconds.  ``--busy`` runs a
spinning process on another core for the whole case, as a shared machine would.

    python benchmarks/local_accuracy.py [--cases micro224 micro320x448 micro448 t448 t672] [--hidden 12]
        [--rounds 3] [--busy] [--write]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import time
from contextlib import contextmanager

import numpy as np

from sparsevit_sdk import Target, build_model, measure_latency, search_space, set_sparsity
from sparsevit_sdk.local import for_device
from sparsevit_sdk.profiler import device_fingerprint, reference_ms

CASES = {  # name: (model, input shape)
    "micro224": ("swin_micro", (1, 3, 224, 224)),
    "micro320x448": ("swin_micro", (1, 3, 320, 448)),
    "micro448": ("swin_micro", (1, 3, 448, 448)),
    "t448": ("swin_t", (1, 3, 448, 448)),
    "t672": ("swin_t", (1, 3, 672, 672)),
}


def _spin() -> None:
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31


@contextmanager
def busy_neighbour(on: bool):
    """A process spinning on a core of its own while the case runs (nothing when ``on`` is False)."""
    if not on:
        yield
        return
    proc = mp.get_context("spawn").Process(target=_spin, daemon=True)
    proc.start()
    try:
        yield
    finally:
        proc.kill()
        proc.join()


def run_case(name: str, hidden: int, rounds: int, busy: bool) -> dict:
    model_name, shape = CASES[name]
    model = build_model(model_name)
    space = search_space(model)
    rng = np.random.default_rng(0)
    configs = [space.dense()] + [space.sample(rng) for _ in range(hidden)]
    with busy_neighbour(busy):
        start = time.perf_counter()
        predictor = for_device(model, shape, "cpu", cache=False, progress=False)
        calibration_s = time.perf_counter() - start
        checked = Target.resolve(predictor, model, shape).rechecked(model, shape).predictor  # as a search does first
        measured = np.full(len(configs), np.inf)
        probe = np.inf  # the reference workload beside the hidden configs: does it move as the model does?
        for _ in range(rounds):  # interleaved: drift hits every config alike
            for i, cfg in enumerate(configs):
                set_sparsity(model, cfg)
                stats = measure_latency(model, shape, "cpu", warmup=2, repeats=7, threads=1, clock="cpu")
                measured[i] = min(measured[i], stats.p10_ms)
            probe = min(probe, reference_ms("cpu"))
        set_sparsity(model, space.dense())
    predicted = predictor.predict_configs(model, shape, configs)
    ratio = measured / predicted
    speedup_ratio = (measured[0] / measured[1:]) / (predicted[0] / predicted[1:])
    error = predictor.expected_error or {}
    checked_ratio = measured / checked.predict_configs(model, shape, configs)
    return {
        "case": name, "busy": busy, "within_10": 100 * float(np.mean(np.abs(ratio - 1) <= 0.1)),
        "mape": 100 * float(np.mean(np.abs(ratio - 1))),
        "speedup_within_10": 100 * float(np.mean(np.abs(speedup_ratio - 1) <= 0.1)),
        "checked_within_10": 100 * float(np.mean(np.abs(checked_ratio - 1) <= 0.1)),
        "level": checked.learned_.calibration.get("level", 1.0),
        "dense_measured_over_predicted": float(ratio[0]), "cv_within_10": error.get("within_10"),
        "cv_mape": error.get("mape"), "calibration_s": calibration_s,
        "probe_ratio": probe / predictor.learned_.calibration["probe_ms"],
        "models": predictor.learned_.calibration["model_rows"], "met": predictor.learned_.calibration["met"],
        "time_limit_s": predictor.learned_.calibration["time_limit_s"],
    }


def table(rows: list[dict]) -> str:
    lines = ["| case | neighbour | hidden within ±10 % | MAPE | speed-ups within ±10 % | dense meas./pred. | "
             "after the level check: within ±10 % (level) | "
             "calibration's own CV (within ±10 %, MAPE) | whole models timed, target met | probe then / at calibration "
             "| calibration s (limit) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        neighbour = "busy" if r["busy"] else "idle"
        lines.append(f"| {r['case']} | {neighbour} | {r['within_10']:.0f} % | {r['mape']:.1f} % | "
                     f"{r['speedup_within_10']:.0f} % | {r['dense_measured_over_predicted']:.2f} | "
                     f"{r['checked_within_10']:.0f} % ({r['level']:.2f}) | "
                     f"{r['cv_within_10']:.0f} %, {r['cv_mape']:.1f} % | {r['models']}, {'yes' if r['met'] else 'no'}"
                     " | "
                     f"{r['probe_ratio']:.2f} | {r['calibration_s']:.0f} ({r['time_limit_s']:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--hidden", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="also run every case beside a busy process")
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args()
    rows = []
    for busy in ([False, True] if args.busy else [False]):
        for name in args.cases:
            rows.append(run_case(name, args.hidden, args.rounds, busy))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    cpu = device_fingerprint("cpu", threads=1, clock="cpu")
    command = f"python benchmarks/local_accuracy.py --cases {' '.join(args.cases)}" + (" --busy" if args.busy else "")
    isa = ", ".join(cpu.get("isa", []))
    text = (f"## Local calibration accuracy\n\n`{command}` on {cpu['name']} ({isa}; {platform.machine()}), one "
            f"thread, CPU clock, {args.hidden} hidden random configs per case plus dense, {args.rounds} interleaved "
            f"rounds.\n\n{table(rows)}\n")
    print(text)
    if args.write:
        from _results import now_utc, write_section

        write_section(text.replace("\n\n", f" ({now_utc()})\n\n", 1))


if __name__ == "__main__":
    main()
