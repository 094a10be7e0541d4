"""Scale-out: the same seeded search locally, on 2 worker processes and on a local 2-CPU Ray cluster.

    python benchmarks/scaleout.py [--cost 1.0] [--population 10] [--generations 4] [--no-write]

The proxy is the default label-free proxy on swin_micro (a real score), padded with sleep
to ``--cost`` seconds of wall time per call: a stand-in for an expensive proxy (a forward
pass over calibration data on a GPU), so the speed-up measures the executor, not how two
workers share two CPU cores with other jobs.  Every run must find the identical history.
Per-candidate overhead = extra worker-seconds per proxy call over perfect scaling:
``(wall x workers - local wall) / calls``.  A second pass with the bare proxy (about 20 ms
per call) shows the fixed cost of dispatch.  Writes the table into the "## Scale-out"
section of benchmarks/RESULTS.md (only that section).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import ray
from _results import RESULTS, now_utc, write_section

from sparsevit_sdk import SearchResult, SearchSession, build_model
from sparsevit_sdk.accuracy import default_proxy
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search.executors import ProcessExecutor, RayExecutor

SHAPE = (1, 3, 112, 112)
WORKERS = 2
SECTION = "## Scale-out"


class FixedCost:
    """``proxy``'s score, returned after ``cost_s`` seconds of wall time."""

    def __init__(self, proxy, cost_s: float) -> None:
        self.proxy, self.cost_s, self.name = proxy, cost_s, proxy.name

    def __call__(self, cfg) -> float:
        start = time.perf_counter()
        value = self.proxy(cfg)
        time.sleep(max(0.0, self.cost_s - (time.perf_counter() - start)))
        return value


def search(model, proxy, executor, args) -> tuple[SearchResult, float]:
    start = time.perf_counter()
    result = SearchSession(model, "cpu", latency_budget=0.9, proxy=proxy, input_shape=SHAPE, seed=0,
                           population=args.population, parents=args.parents, generations=args.generations,
                           executor=executor, progress=False).run()
    return result, time.perf_counter() - start


def identical(a: SearchResult, b: SearchResult) -> bool:
    return a.best == b.best and a.history.equals(b.history) and a.progress.equals(b.progress)


def measure(model, proxy, args, label: str) -> list[dict]:
    """Local, the process pool (its workers start with each search) and two searches on Ray
    (the cluster's worker processes start with its first search ever and then stay)."""
    local, local_s = search(model, proxy, None, args)
    runs = [("local (in-process)", 1, local, local_s)]
    with ProcessExecutor(WORKERS) as pool:
        runs.append(("process pool (spawn)", WORKERS, *search(model, proxy, pool, args)))
    with RayExecutor() as executor:
        for n in (1, 2):
            runs.append((f"Ray tasks (search {n})", WORKERS, *search(model, proxy, executor, args)))
    calls = local.evaluations
    return [dict(proxy=label, executor=name, workers=workers, calls=calls, wall_s=wall_s, speedup=local_s / wall_s,
                 overhead_ms=1000 * (wall_s * workers - local_s) / calls if workers > 1 else None,
                 identical=identical(result, local), best=str(result.best))
            for name, workers, result, wall_s in runs]


def table(rows: list[dict]) -> str:
    lines = ["| proxy | executor | workers | proxy calls | wall s | speed-up | overhead ms / call | identical result |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        overhead = "" if r["overhead_ms"] is None else f"{r['overhead_ms']:.0f}"
        lines.append(f"| {r['proxy']} | {r['executor']} | {r['workers']} | {r['calls']} | {r['wall_s']:.1f} | "
                     f"{r['speedup']:.2f}x | {overhead} | {'yes' if r['identical'] else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cost", type=float, default=1.0, help="seconds per proxy call (default 1.0)")
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--parents", type=int, default=2)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args()

    load = os.getloadavg()
    start = time.perf_counter()
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - start
    model = build_model("swin_micro")
    with num_threads(1):
        proxy = default_proxy(model, SHAPE, num_images=4)
        rows = measure(model, proxy, args, "bare (~20 ms / call)")
        rows += measure(model, FixedCost(proxy, args.cost), args, f"{args.cost:g} s / call")
    ray.shutdown()
    load_after = os.getloadavg()

    best = {r["best"] for r in rows}
    text = (
        f"{SECTION}\n\n"
        f"Produced by `python benchmarks/scaleout.py` on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPU cores, no GPU), {now_utc()}. "
        f"The same seeded search (swin_micro, {SHAPE[2]}x{SHAPE[3]}, cpu predictor, budget 0.9, population "
        f"{args.population}, {args.parents} parents, {args.generations} generations), one after another in one run. "
        f"The proxy is the default label-free proxy padded with sleep to {args.cost:g} s per call (the "
        f"executor is measured, not CPU sharing), after the bare proxy. The process pool starts its workers "
        f"(importing torch) in every search; Ray starts the cluster's worker processes in its first search ever "
        f"(bare proxy, search 1) and reuses them; every search ships its model and images to each worker once. "
        f"Ray cluster start ({WORKERS} CPUs, local): {ray_start_s:.1f} s, not counted. Overhead per call = "
        f"(wall x workers - local wall) / calls.\n\n"
        f"{table(rows)}\n\n"
        f"Best config in every run: {', '.join(sorted(best))}; 'identical' compares the whole history and "
        f"progress with the local run.\n\n"
        f"Noise: the 2-core machine is shared with other jobs (load average "
        f"{load[0]:.1f} before, {load_after[0]:.1f} after), so rows where workers start (importing torch) "
        f"and the bare-proxy rows vary from run to run; the padded rows are the ones to read for scaling.\n"
    )
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote the {SECTION!r} section of {RESULTS}")


if __name__ == "__main__":
    main()
