"""Search quality: evolutionary search vs uniform sparsity vs random search, same evaluations.

The demo supernet of ``train_demo_supernet`` (the recipe of ``examples/train_supernet.py``:
``swin_micro`` + demo head, trained dense and adapted on 224x224 digit canvases) is searched
on 448x448 canvases with the same digits and cells: mostly background, where skipping
windows should cost little.  For each budget (a fraction of the dense model's predicted
CPU latency) three methods pick a config:

- ``search``: ``SearchSession`` (the default ``"ga"`` strategy: DEAP, single objective under the
  budget), its own fresh proxy;
- ``uniform``: the uniform sparsity within the budget with the best proxy score;
- ``random``: ``SearchSession(..., strategy="random")``, stopped after as many proxy evaluations
  as the search made (``max_evaluations``): random configs within the budget; the best.

Each pick is scored by the proxy (the search's objective: label-free agreement, exp(-KL) of
the sparse vs the dense logits on a few unlabelled val canvases, which ranked configs best
in ``proxy_ranking.py``: Spearman 0.96 vs 0.83 for val mIoU on 16 labelled canvases) and the
true metric (test mIoU, digits disjoint from val), predicted by the
shipped ``cpu`` predictor and measured on this CPU (one thread, thread CPU-time clock, p10,
fastest of interleaved rounds: how the predictor's data was taken).  Last, the search
machinery alone is timed on Swin-T's 6 knobs at 672x672 with the reference settings and a
proxy of negligible cost, i.e. what a search costs when every proxy call is a cache hit.

    python benchmarks/search_quality.py [--budgets 0.5 0.6 0.7 0.8] [--quick] [--no-write]

Writes the ``## Search`` section of benchmarks/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from _results import now_utc, write_section
from proxy_ranking import CACHE, mean_iou

from sparsevit_sdk import (
    LatencyPredictor,
    SearchSession,
    SearchSpace,
    SparsityConfig,
    build_model,
    measure_latency,
    search_space,
    set_sparsity,
)
from sparsevit_sdk.accuracy import AgreementProxy
from sparsevit_sdk.demo import DemoRecipe, train_demo_supernet
from sparsevit_sdk.profiler import device_fingerprint, num_threads

logger = logging.getLogger("search_quality")

SEARCH_SIZE = 448
Predict = Callable[[list[SparsityConfig]], np.ndarray]


@dataclass
class Settings:
    probe_images: int = 8  # the label-free proxy's unlabelled val canvases
    test_images: int = 32  # the true metric
    population: int = 16
    parents: int = 4
    generations: int = 4
    repeats: int = 10  # timed calls per latency round
    rounds: int = 3

    @classmethod
    def quick(cls) -> Settings:
        return cls(probe_images=2, test_images=4, population=6, parents=2, generations=1, repeats=3, rounds=1)


@dataclass
class Pick:
    method: str
    config: SparsityConfig
    proxy: float
    evaluations: int
    wall_s: float


def session_pick(method: str, model, proxy: AgreementProxy, predictor: LatencyPredictor, budget: float,
                 seed: int, **options) -> Pick:
    """The best config of a ``SearchSession`` whose strategy and limits are ``options``."""
    result = SearchSession(model, predictor, latency_budget=budget, proxy=proxy,
                           input_shape=(1, 3, SEARCH_SIZE, SEARCH_SIZE), seed=seed, progress=False, **options).run()
    return Pick(method, result.best, result.score, result.evaluations, result.search_time_s)


def uniform_pick(space: SearchSpace, proxy: AgreementProxy, budget_ms: float, predict: Predict) -> Pick:
    start = time.perf_counter()
    uniform = [space.uniform(g) for g in space.grid]
    feasible = [c for c, ms in zip(uniform, predict(uniform)) if ms <= budget_ms]
    best = max(feasible, key=proxy)
    return Pick("uniform", best, proxy(best), len(feasible), time.perf_counter() - start)


def measured_ms(backbone, configs: list[SparsityConfig], settings: Settings) -> list[float]:
    """Fastest single-thread p10 over rounds, every config timed once per round, on the thread's CPU
    time (as the shipped cpu profiles): time spent waiting for a core on this shared machine does not count."""
    runs: list[list[float]] = [[] for _ in configs]
    for _ in range(settings.rounds):
        for cfg, values in zip(configs, runs):
            set_sparsity(backbone, cfg)
            values.append(measure_latency(backbone, (1, 3, SEARCH_SIZE, SEARCH_SIZE), warmup=2,
                                          repeats=settings.repeats, threads=1, clock="cpu").p10_ms)
    set_sparsity(backbone, search_space(backbone).dense())
    return [min(v) for v in runs]


def machinery_time(seed: int) -> tuple[float, int, int]:
    """Swin-T, 6 knobs, 672x672, reference settings, a proxy of negligible cost: the SDK's own cost
    (the GA plus latency prediction), i.e. a search whose proxy answers every call from its cache.

    The proxy is a fixed smooth function of the config (later and earlier stages weighted
    differently), so the search has something to optimise; its values mean nothing else.
    """
    sensitivity = np.array([4.0, 2.0, 0.5, 0.7, 1.0, 3.0])

    def cached(cfg: SparsityConfig) -> float:
        return float(1.0 - sensitivity @ np.square(cfg.ratios))

    model = build_model("swin_t", seed=None)
    start = time.perf_counter()
    result = SearchSession(model, "cpu", latency_budget=0.7, proxy=cached, input_shape=(1, 3, 672, 672), seed=seed,
                           progress=False).run()
    return time.perf_counter() - start, result.evaluations, len(result.history)


def run(budgets: list[float], recipe: DemoRecipe, settings: Settings, seed: int) -> str:
    model = train_demo_supernet(recipe, cache_dir=CACHE).adapted
    backbone = model.backbone
    space = search_space(model)
    predictor = LatencyPredictor.for_hardware("cpu")
    shape = (1, 3, SEARCH_SIZE, SEARCH_SIZE)

    def predict(configs: list[SparsityConfig]) -> np.ndarray:
        return predictor.predict_configs(backbone, shape, configs)

    probe = torch.cat([x for x, _ in recipe.loader("val", settings.probe_images, size=SEARCH_SIZE)])

    def label_free() -> AgreementProxy:
        return AgreementProxy(model, probe, measure="kl", name="agreement-kl")

    dense_ms = float(predict([space.dense()])[0])
    test = mean_iou(model, recipe.loader("test", settings.test_images, size=SEARCH_SIZE), "test mIoU")
    shared = label_free()  # uniform and random share one cache: it changes their cost, not their picks
    rows, dense_measured, ratios, speedups = [], [], [], []
    wins = dict.fromkeys(("uniform proxy", "uniform test", "random proxy", "random test"), 0)
    for budget in budgets:
        search = session_pick("search", model, label_free(), predictor, budget, seed, population=settings.population,
                              parents=settings.parents, generations=settings.generations)
        picks = [search, uniform_pick(space, shared, budget * dense_ms, predict),
                 session_pick("random", model, shared, predictor, budget, seed, strategy="random",
                              generations=search.evaluations - 1, max_evaluations=search.evaluations, timeout_s=None)]
        measured = measured_ms(backbone, [space.dense(), *(p.config for p in picks)], settings)
        dense_measured.append(measured[0])
        truth = [test(p.config) for p in picks]
        for other, pick, true in zip(("uniform", "random"), picks[1:], truth[1:]):
            wins[f"{other} proxy"] += search.proxy >= pick.proxy
            wins[f"{other} test"] += truth[0] >= true
        for pick, true, ms, pred in zip(picks, truth, measured[1:], predict([p.config for p in picks])):
            ratios.append(ms / pred)
            speedups.append((measured[0] / ms) / (dense_ms / pred))
            rows.append(
                f"| {budget:.1f} | {pick.method} | {pick.config} | {pred:.1f} ({dense_ms / pred:.2f}x) | "
                f"{ms:.1f} ({measured[0] / ms:.2f}x) | {ms / pred:.2f} | {speedups[-1]:.2f} | {pick.proxy:.4f} | "
                f"{true:.3f} | {pick.evaluations} | {pick.wall_s:.0f} |")
        logger.info("budget %.1f done", budget)
    machinery_s, machinery_evals, machinery_configs = machinery_time(seed)
    within = np.mean(np.abs(np.array(ratios) - 1.0) <= 0.10)
    within_speedup = np.mean(np.abs(np.array(speedups) - 1.0) <= 0.10)
    n = len(budgets)
    return "\n".join([
        "## Search",
        "",
        f"`python benchmarks/search_quality.py` on {device_fingerprint('cpu')['name']}, torch "
        f"{torch.__version__}, {now_utc()}, seed {seed}.  Demo supernet (`{recipe.backbone}` + demo head): dense for "
        f"{recipe.pretrain_steps} steps on {recipe.pretrain_size}px and {recipe.finetune_steps} on {recipe.size}px "
        f"canvases, adapted for {recipe.adapt_steps} steps on {recipe.size}px (`train_demo_supernet`, the recipe of "
        f"`examples/train_supernet.py`); searched and evaluated at {SEARCH_SIZE}x{SEARCH_SIZE}.  Proxy: label-free "
        f"agreement (exp(-KL) of sparse vs dense logits) on {settings.probe_images} unlabelled val canvases; "
        "true metric: test mIoU on "
        f"{settings.test_images} canvases (dense: {test(space.dense()):.3f}).  Predicted: shipped `cpu` predictor "
        f"(dense {dense_ms:.1f} ms); measured: single-thread CPU-time p10, fastest of {settings.rounds} interleaved "
        f"rounds (dense {min(dense_measured):.1f} ms).  Search: population {settings.population}, "
        f"{settings.parents} parents, {settings.generations} generations, its wall time with a fresh proxy cache; "
        "random search (`strategy=\"random\"`) scores as many distinct configs (references included) as the "
        "search did.",
        "",
        "| budget | method | config | predicted ms (speed-up) | measured ms (speed-up) | measured / predicted ms | "
        "measured / predicted speed-up | proxy | test mIoU | evaluations | wall s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Search ≥ best uniform sparsity at {wins['uniform proxy']}/{n} budgets by the proxy and "
        f"{wins['uniform test']}/{n} by test mIoU; search ≥ random search (same number of evaluations) at "
        f"{wins['random proxy']}/{n} by the proxy and {wins['random test']}/{n} by test mIoU.  Measured / predicted "
        f"within ±10 %: {within:.0%} of the {len(ratios)} picks in ms, {within_speedup:.0%} in speed-up over dense "
        "(measured speed-up against the dense model timed in the same rounds).  The dense model alone measured "
        f"{min(dense_measured) / dense_ms:.2f}x its prediction: the shipped profile was taken in an earlier session "
        "and this shared VM's speed drifts between sessions even on the thread CPU clock, so the ms ratio carries "
        "that drift; the speed-up ratio divides it out.",
        "",
        f"Search machinery on Swin-T (6 knobs, 672x672, population 100, 25 parents, 20 generations) with a proxy of "
        f"negligible cost: **{machinery_s:.1f} s** for {machinery_configs} predicted and {machinery_evals} scored "
        "configs (target < 60 s).",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--quick", action="store_true", help="the quick recipe and tiny settings: a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave RESULTS.md alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = DemoRecipe.quick(seed=args.seed) if args.quick else DemoRecipe(seed=args.seed)
    with num_threads(1):  # as the cpu predictor was measured; two threads thrash on a shared 2-core machine
        section = run(args.budgets, recipe, Settings.quick() if args.quick else Settings(), args.seed)
    print(section)
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    main()
