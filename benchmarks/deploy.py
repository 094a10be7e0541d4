"""The honest comparison: dense vs a searched config of Swin-T, each in eager PyTorch, torch.compile
(Inductor) and ONNX Runtime, at 1 thread and at all cores, side by side in one run.

A searched config is worth what it saves where the model is deployed: the sparse speed-up must
survive each runtime (target: >= 0.9x its eager speed-up), and the sparse model in its best
runtime must beat the dense model in *its* best runtime (target: >= 1.5x).  Wall clock (ONNX
Runtime runs its own threads), fastest p10 over interleaved rounds.

    python benchmarks/deploy.py [--resolution 672] [--budget 0.6] [--rounds 3] [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Callable

import torch
from _results import now_utc, write_section

from sparsevit_sdk import SearchSession, SparsityConfig, build_model, search_space, set_sparsity
from sparsevit_sdk.profiler import device_fingerprint, num_threads, time_callable
from sparsevit_sdk.runtimes import RUNTIMES, runtime_call


def searched_config(model: torch.nn.Module, size: int, budget: float) -> SparsityConfig:
    """A per-layer config for ``budget`` of the dense latency on the shipped cpu predictor; the
    label-free proxy scores on two 224-px images so the search takes seconds, not hours."""
    session = SearchSession(model, "cpu", latency_budget=budget, input_shape=(1, 3, size, size), population=16,
                            parents=4, generations=3, proxy_images=2, proxy_resolution=(224, 224), progress=False)
    return session.run().best


def runners(model: torch.nn.Module, config: SparsityConfig, x: torch.Tensor,
            threads: int) -> dict[str, Callable[[], object]]:
    """``model`` at ``config`` in every runtime, built once (compiled, exported) before any timed call."""
    model = copy.deepcopy(model)
    set_sparsity(model, config)
    with torch.no_grad(), num_threads(threads):
        model(x)  # builds the window layouts before compiling
        return {runtime: runtime_call(model, x, runtime, threads=threads) for runtime in RUNTIMES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=672)
    parser.add_argument("--budget", type=float, default=0.6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--results", default=None, help="write the table into this RESULTS.md (default: print)")
    args = parser.parse_args()
    model = build_model("swin_t")
    size, all_cores = args.resolution, os.cpu_count() or 1
    configs = {"dense": search_space(model).dense(), "searched": searched_config(model, size, args.budget)}
    x = torch.randn(1, 3, size, size)
    thread_counts = sorted({1, all_cores})
    ms: dict[tuple[str, str, int], float] = {}
    for threads in thread_counts:
        calls = {name: runners(model, cfg, x, threads) for name, cfg in configs.items()}
        runs: dict[tuple[str, str], list[float]] = {}
        with torch.no_grad():
            for _ in range(args.rounds):
                for name in configs:
                    for runtime in RUNTIMES:
                        stats = time_callable(calls[name][runtime], "cpu", warmup=1, repeats=args.repeats,
                                              threads=threads)
                        runs.setdefault((name, runtime), []).append(stats.p10_ms)
        for (name, runtime), values in runs.items():
            ms[name, runtime, threads] = min(values)
        print(f"{threads} thread(s) done", flush=True)
    lines = [
        "## Deploy",
        "",
        f"`python benchmarks/deploy.py --resolution {size} --budget {args.budget}` on "
        f"{device_fingerprint(torch.device('cpu'))['name']} ({now_utc()}): Swin-T at {size}x{size}, batch 1, random "
        f"weights, wall clock, fastest p10 of {args.rounds} interleaved rounds x {args.repeats} calls. Searched config "
        f"{list(configs['searched'].ratios)} (budget {args.budget} of dense on the shipped cpu predictor).",
        "",
        "| runtime | " + " | ".join(f"dense ms ({t}t) | searched ms ({t}t) | speed-up ({t}t)" for t in thread_counts)
        + " |",
        "|---|" + "---:|" * (3 * len(thread_counts)),
    ]
    for runtime in RUNTIMES:
        cells = []
        for t in thread_counts:
            d, s = ms["dense", runtime, t], ms["searched", runtime, t]
            cells += [f"{d:.0f}", f"{s:.0f}", f"{d / s:.2f}x"]
        lines.append(f"| {runtime} | " + " | ".join(cells) + " |")
    lines.append("")
    for t in thread_counts:
        eager_speedup = ms["dense", "eager", t] / ms["searched", "eager", t]
        kept = ", ".join(f"{r} {ms['dense', r, t] / ms['searched', r, t] / eager_speedup:.2f}" for r in RUNTIMES[1:])
        best_dense = min(RUNTIMES, key=lambda r: ms["dense", r, t])
        best_sparse = min(RUNTIMES, key=lambda r: ms["searched", r, t])
        lead = ms["dense", best_dense, t] / ms["searched", best_sparse, t]
        lines.append(f"- {t} thread(s): speed-up kept vs eager: {kept} (target >= 0.9); searched in its best runtime "
                     f"({best_sparse}) vs dense in its best ({best_dense}): {lead:.2f}x (target >= 1.5x).")
    text = "\n".join(lines)
    print(text)
    if args.results:
        write_section(text)


if __name__ == "__main__":
    main()
