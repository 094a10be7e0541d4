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

    python benchmarks/scaleout.py --nodes [--cost 1.0] [--kill-after S] [--no-write]

The same search locally, on a 1-node and a 2-node local cluster (each node its own ``ray start``), and
on 2 nodes losing one mid-search (retried calls, identical result): "## Scale-out: a multi-node cluster".

    python benchmarks/scaleout.py --split [--split-batches 16] [--batch-cost 0.1] [--no-write]

One candidate scored by many workers: ``SplitProxy`` over 1, 2 and 4 Ray workers on a 2-node local
cluster, wall time per candidate and whether every score equals the unsplit one to the last bit;
into its own "## Scale-out: one candidate split over workers" section.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import threading
import time

import ray
from _results import RESULTS, now_utc, write_section

from sparsevit_sdk import SearchResult, SearchSession, build_model, search_space
from sparsevit_sdk.accuracy import AccuracyProxy, MeanIoU, SplitProxy
from sparsevit_sdk.demo import NUM_CLASSES, build_demo_model, default_proxy, demo_loader
from sparsevit_sdk.profiler import num_threads
from sparsevit_sdk.search import ProcessExecutor, RayExecutor
from sparsevit_sdk.testing import LocalCluster

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


SPLIT_SECTION = "## Scale-out: one candidate split over workers"
SPLIT_WORKERS = (1, 2, 4)


class PaddedAccuracy(AccuracyProxy):
    """An AccuracyProxy whose batches take ``batch_cost_s`` of wall time each: a scoring set too large for
    one worker's time (GPU forwards), so the split measures the executor, not two cores shared by four."""

    def __init__(self, *args, batch_cost_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batch_cost_s = batch_cost_s

    def _state(self, indices: range):
        start = time.perf_counter()
        state = super()._state(indices)
        time.sleep(max(0.0, self.batch_cost_s * len(indices) - (time.perf_counter() - start)))
        return state


def split_scoring(args) -> str:
    """Each of a few configs scored in-process and by SplitProxy over 1, 2 and 4 Ray workers (2 nodes of 2 logical
    CPUs): wall time per candidate once the workers hold the proxy, and whether every score is identical."""
    load, start = os.getloadavg(), time.perf_counter()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # as LocalCluster's nodes run
    with LocalCluster([{}, {}], num_cpus=max(SPLIT_WORKERS) // 2) as cluster:
        ray.init(address=cluster.address, log_to_driver=False)
        ray_start_s = time.perf_counter() - start
        try:
            return _split_section(args, ray_start_s, load[0])
        finally:
            ray.shutdown()


def _split_section(args, ray_start_s: float, load: float) -> str:
    model = build_demo_model("swin_micro", seed=0)
    batches = list(demo_loader("val", 4 * args.split_batches, batch_size=4, size=64, cell=32, digit_px=(16, 24)))
    space = search_space(model)
    warm, configs = space.dense(), [space.uniform(r) for r in (0.2, 0.4, 0.6)]
    rows = []
    with num_threads(1):
        for label, proxy in (("bare", AccuracyProxy(model, batches, metric=MeanIoU(NUM_CLASSES))),
                             (f"{args.batch_cost:g} s / batch", PaddedAccuracy(
                                 model, batches, metric=MeanIoU(NUM_CLASSES), batch_cost_s=args.batch_cost))):
            start = time.perf_counter()
            single = [proxy(cfg) for cfg in configs]
            single_s = (time.perf_counter() - start) / len(configs)
            rows.append(dict(proxy=label, run="in-process, unsplit", workers=1, wall_s=single_s, identical=True))
            with RayExecutor() as executor:
                SplitProxy(proxy, parts=max(SPLIT_WORKERS), executor=executor)(warm)  # a worker per CPU, started
                for n in SPLIT_WORKERS:
                    split = SplitProxy(proxy, parts=n, executor=executor)
                    split(warm)  # ships the proxy to the workers: not counted
                    start = time.perf_counter()
                    scores = [split(cfg) for cfg in configs]
                    wall_s = (time.perf_counter() - start) / len(configs)
                    rows.append(dict(proxy=label, run=f"SplitProxy(parts={n}), Ray", workers=n, wall_s=wall_s,
                                     identical=scores == single))
            for row in rows[-len(SPLIT_WORKERS) - 1:]:
                row["speedup"] = single_s / row["wall_s"]
    lines = ["| proxy | run | workers | wall s / candidate | speed-up | score identical to the last bit |",
             "|---|---|---:|---:|---:|---|"]
    lines += [f"| {r['proxy']} | {r['run']} | {r['workers']} | {r['wall_s']:.3f} | {r['speedup']:.2f}x | "
              f"{'yes' if r['identical'] else 'NO'} |" for r in rows]
    table = "\n".join(lines)
    return (
        f"{SPLIT_SECTION}\n\n"
        f"Produced by `python benchmarks/scaleout.py --split` on {_cpu_model()} ({os.cpu_count()} CPU cores, "
        f"no GPU), {now_utc()}. One candidate's scoring set ({args.split_batches} batches of 4 demo canvases, "
        f"64x64, mIoU of a random-init swin_micro segmenter) cut into 1, 2 or 4 parts, each part a Ray task "
        f"(a local cluster of 2 nodes, each its own `ray start` with {max(SPLIT_WORKERS) // 2} logical CPUs, "
        f"started in {ray_start_s:.1f} s, not counted), and the parts' confusion matrices merged; mean over "
        f"{len(configs)} configs after a warm-up config (starting a worker per CPU and shipping the proxy, not "
        f"counted). The padded rows make every batch take {args.batch_cost:g} s "
        f"of wall time (a stand-in for a large set on GPU workers: the executor is measured, not 4 workers "
        f"sharing 2 cores); the bare rows show the fixed cost of dispatch and merge, on a machine shared with "
        f"other jobs (load average {load:.1f} before, {os.getloadavg()[0]:.1f} after).\n\n{table}\n"
    )


NODES_SECTION = "## Scale-out: a multi-node cluster"


def on_nodes(model, proxy, args, nodes: int) -> tuple[SearchResult, float, float]:
    """The search on a fresh LocalCluster of ``nodes`` nodes (WORKERS CPUs in all); with ``--kill-after``
    (and 2 nodes), the second node's processes are killed that many seconds into the search."""
    start = time.perf_counter()
    with LocalCluster([{}] * nodes, num_cpus=WORKERS // nodes) as cluster, RayExecutor(cluster.address) as executor:
        search(model, proxy, executor, args)  # starts the workers and ships the proxy: not counted
        started_s = time.perf_counter() - start
        killer = threading.Timer(args.kill_after, cluster.nodes[-1].kill)
        if args.kill_after is not None and nodes > 1:
            killer.start()
        try:
            return *search(model, proxy, executor, args), started_s
        finally:
            killer.cancel()


def multi_node(args) -> str:
    """Local vs Ray on 1 node vs Ray on 2 nodes (each its own `ray start`), then a 2-node run that loses a node."""
    load = os.getloadavg()
    model = build_model("swin_micro")
    rows = []
    with num_threads(1):
        proxy = FixedCost(default_proxy(model, SHAPE, num_images=4), args.cost)
        local, local_s = search(model, proxy, None, args)
        rows.append(("local (in-process)", 1, local, local_s, None))
        for nodes in (1, 2):
            rows.append((f"Ray, {nodes} node(s) of {WORKERS // nodes} CPU(s)", WORKERS,
                         *on_nodes(model, proxy, args, nodes)))
        args.kill_after = args.kill_after or 0.4 * rows[-1][3]
        rows.append((f"Ray, 2 nodes, node 2 killed at {args.kill_after:.1f} s", WORKERS,
                     *on_nodes(model, proxy, args, 2)))
    calls = local.evaluations
    lines = ["| run | workers | proxy calls | wall s | speed-up | overhead ms / call | retried calls | identical |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, workers, result, wall_s, _ in rows:
        overhead = f"{1000 * (wall_s * workers - local_s) / calls:.0f}" if workers > 1 else ""
        lines.append(f"| {name} | {workers} | {calls} | {wall_s:.1f} | {local_s / wall_s:.2f}x | {overhead} | "
                     f"{result.retried} | {'yes' if identical(result, local) else 'NO'} |")
    starts = ", ".join(f"{r[4]:.1f} s" for r in rows if r[4] is not None)
    return (
        f"{NODES_SECTION}\n\n"
        f"Produced by `python benchmarks/scaleout.py --nodes` on {_cpu_model()} ({os.cpu_count()} CPU cores, no GPU), "
        f"{now_utc()}. The seeded search of the section above (population {args.population}, {args.parents} "
        f"parents, {args.generations} generations), its proxy padded to {args.cost:g} s per call, locally and on "
        f"a fresh `LocalCluster` per row: {WORKERS} CPUs in all, on 1 node or on 2 nodes, each node its own `ray "
        f"start` (raylet, resources, OS-assigned ports) on this machine. Each cluster runs the search once "
        f"first (starting workers, shipping the proxy; with the cluster's start {starts}; not counted). The last row "
        f"SIGKILLs every process of node 2 (raylet, agents, workers) mid-search: its running call is retried on "
        f"node 1. "
        f"Overhead per call = (wall x workers - local wall) / calls. Load average {load[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (a 2-core machine shared with other jobs).\n\n" + "\n".join(lines) + "\n")


def _cpu_model() -> str:
    """lscpu's model name (what RESULTS.md calls the machine)."""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "this machine"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cost", type=float, default=1.0, help="seconds per proxy call (default 1.0)")
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--parents", type=int, default=2)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    p.add_argument("--nodes", action="store_true", help="only local vs 1-node vs 2-node Ray, and losing a node")
    p.add_argument("--kill-after", type=float, help="--nodes: seconds into the node-loss search (default: 40%% of "
                   "the 2-node wall time)")
    p.add_argument("--split", action="store_true", help="only the split scoring of one candidate over 1/2/4 workers")
    p.add_argument("--split-batches", type=int, default=16, help="batches of the split candidate's set (default 16)")
    p.add_argument("--batch-cost", type=float, default=0.1, help="seconds per batch, padded rows (default 0.1)")
    args = p.parse_args()
    if args.split or args.nodes:
        text = split_scoring(args) if args.split else multi_node(args)
        print(text)
        if not args.no_write:
            write_section(text)
        return

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
