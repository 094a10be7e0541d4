"""How right are the latency predictors, and how right could they be?

For every shipped predictor with its profile dataset:

1. held-out whole-model configs (never used in fitting): % within ±10% / ±5%, MAPE and
   Spearman ρ of the xgboost predictor next to a FLOPs-proportional baseline and a lookup
   table (sum of the measured units, as once-for-all does), overall and per model;
2. a resolution left out of fitting: refit on the other resolutions, judge on it;
3. few-shot calibration to that resolution from n = 10, 25, 50, 100 measured whole
   models (as many as the data allows), averaged over draws, judged on a fixed set;
4. the noise ceiling: configs from the dataset measured twice more, now, the way the
   profiler measured them; how often two measurements of one config agree within ±10%
   bounds what any predictor can score;
5. prediction throughput of whole-model configs for Swin-T.

    python benchmarks/predictor_accuracy.py [--held-out 672] [--noise-configs 24] \\
        [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _results import now_utc, write_section

from sparsevit_sdk import LatencyPredictor, SparsityConfig, build_model, measure_latency, search_space, set_sparsity
from sparsevit_sdk.arch import signature_block
from sparsevit_sdk.dataset import load_profiles
from sparsevit_sdk.hardware import list_hardware
from sparsevit_sdk.predictor import agreement, format_report, lookup_ms

ROOT = Path(__file__).resolve().parent.parent  # the checkout: its predictors/ and profiles/ are what ships


def shipped_predictors() -> dict[str, Path]:
    """The checkout's predictor files by name (``cpu`` -> ``predictors/cpu.json``)."""
    return {p.stem: p for p in sorted((ROOT / "predictors").glob("*.json"))}


SECTION = "## Latency predictors"
SHIPPED_SECTION = "## Shipped predictors on their own held-out configs"
CAL_SIZES = (10, 25, 50, 100)


def _report(evaluation: dict) -> dict[str, dict]:
    return {"xgboost (per layer)": evaluation["xgboost"], "FLOPs-proportional": evaluation["flops"],
            "lookup table": evaluation["lookup"]}


def shipped_tables(pred: LatencyPredictor, df: pd.DataFrame) -> list[str]:
    out = [f"Judged on {pred.learned_.statistic}; whole-model rows used to fit the overhead are excluded.\n"]
    for label, part in [("all models", df), *[(m, df[df.model == m]) for m in sorted(df.model.unique())]]:
        ev = pred.evaluate(part)
        out += [f"**{label}** ({ev['xgboost']['n']} held-out configs, {ev['excluded']} excluded):\n",
                format_report(_report(ev)), ""]
    return out


def held_out_resolution(pred: LatencyPredictor, df: pd.DataFrame, held: int, sizes: tuple[int, ...],
                        draws: int) -> tuple[list[str], LatencyPredictor | None]:
    """Refit without resolution ``held``; judge on it, then calibrate to it from n samples."""
    at_held = (df.img_h == held) | (df.img_w == held)
    if not at_held.any():
        return [f"No rows at {held} px: held-out resolution skipped."], None
    fit_res = sorted(set(df.loc[~at_held, "img_h"]))
    base = LatencyPredictor(**pred.get_params()).fit(df[~at_held])
    test = df[at_held]
    ev = base.evaluate(test)
    out = [f"Fitted on {fit_res} px only, judged on all {ev['xgboost']['n']} whole-model configs at {held} px. "
           f"The lookup table is given the units *measured* at {held} px (built from {fit_res} alone it "
           "answers 0%).\n", format_report(_report(ev)), ""]

    models = test[test.layer == "model"].reset_index(drop=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(models))
    n_eval = max(len(models) // 3, min(20, len(models) // 2))
    judge, pool = models.iloc[order[:n_eval]], models.iloc[order[n_eval:]]
    units = test[test.layer != "model"]
    judged = pd.concat([judge, units])
    # units that run inside a model (a score timed at a sparsity that prunes nothing is a no-op)
    units = units[(units.layer != "score") | (units.windows_kept < units.windows_total)]
    rows = {"0 (no calibration)": base.evaluate(judged)["xgboost"]}
    skipped = []
    for label, source in [("whole models", pool), ("layer units", units)]:
        for n in sizes:
            if n > len(source):
                skipped.append(f"{n} {label}")
                continue
            results = [LatencyPredictor.calibrate(base, source.sample(n, random_state=draw)).evaluate(judged)["xgboost"]
                       for draw in range(draws)]
            rows[f"{n} {label}"] = {**{k: float(np.nanmean([r[k] for r in results])) for k in results[0]},
                                    "n": results[0]["n"]}
    out += [f"Few-shot calibration to {held} px from n measured whole models (pool of {len(pool)}) or n measured "
            f"layer units (pool of {len(units)}), judged on a fixed set of {len(judge)} other whole-model configs, "
            f"mean of {draws} draws" + (f"; skipped for want of data: {', '.join(skipped)}" if skipped else "")
            + ".\n", format_report(rows).replace("| method |", "| calibration samples |"), ""]
    return out, base


def noise_ceiling(df: pd.DataFrame, n_configs: int, rounds: int, stat: str) -> list[str]:
    """Re-measure dataset configs twice more the way the profiler measured them: ``rounds``
    passes over all configs, each config keeping its quietest round (lowest p10)."""
    models = df[df.layer == "model"]
    if models.empty or n_configs == 0:
        return ["Noise ceiling not measured."]
    groups = models.groupby(["model", "img_h"])
    per_group = max(2, n_configs // groups.ngroups)
    picks = pd.concat([g.sample(min(len(g), per_group), random_state=0) for _, g in groups])
    threads = int(picks.threads.iloc[0])
    repeats = max(1, int(picks.repeats.iloc[0]) // rounds)
    clock = next(iter(df.attrs.get("fingerprints", {}).values()), {}).get("clock", "wall")
    nets: dict[str, torch.nn.Module] = {}

    def measure_all() -> list:
        best: list = [None] * len(picks)
        for _ in range(rounds):
            for i, row in enumerate(picks.itertuples()):
                net = nets.setdefault(row.model, build_model(row.model))
                set_sparsity(net, SparsityConfig(tuple(json.loads(row.config)), row.signature))
                stats = measure_latency(net, (row.batch, 3, row.img_h, row.img_w), warmup=1, repeats=repeats,
                                        threads=threads, clock=clock)
                if best[i] is None or stats.p10_ms < best[i].p10_ms:
                    best[i] = stats
        return best

    first, second = measure_all(), measure_all()
    shapes = ", ".join(f"{m} {h}px" for m, h in picks.groupby(["model", "img_h"]).groups)
    lines = [f"{len(picks)} dataset configs ({shapes}) measured twice more as the profiler does ({rounds} rounds "
             f"of {repeats} timed calls, quietest round kept), {threads} thread(s), {clock} clock:\n",
             "| statistic | two new measurements within ±10 % | within ±5 % | new vs dataset within ±10 % "
             "| median new / dataset |", "|---|---:|---:|---:|---:|"]
    for name, attr in [("p10_ms", "p10_ms"), ("min_ms", "min_ms"), ("latency_ms", "median_ms")]:
        a = np.array([getattr(s, attr) for s in first])
        b = np.array([getattr(s, attr) for s in second])
        old = picks[name].to_numpy(float)
        lines.append(f"| {name} | {agreement(a, b):.0f} % | {agreement(a, b, 0.05):.0f} % | "
                     f"{agreement(a, old):.0f} % | {np.median(a / old):.3f} |")
    lines.append(f"\nThe predictors fit and are judged on `{stat}`.")
    return lines


def throughput(path: Path) -> list[str]:
    pred = LatencyPredictor.load(path)  # fresh: no unit-cost tables yet
    model = build_model("swin_t")
    space = search_space(model)
    configs = [space.sample(i) for i in range(20_000)]
    shape = (1, 3, 224, 224)
    start = time.perf_counter()
    pred.predict_configs(model, shape, configs[:1])
    cold = time.perf_counter() - start
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        pred.predict_configs(model, shape, configs)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    for cfg in configs[:2000]:
        pred.predict_config(model, shape, cfg)
    single = (time.perf_counter() - start) / 2000
    return [f"Swin-T at 224x224 ({pred!r}): first call (builds the unit-cost tables) {cold * 1e3:.0f} ms; then "
            f"`predict_configs` on {len(configs):,} configs takes {best * 1e3:.1f} ms = "
            f"**{len(configs) / best:,.0f} configs/s**; one `predict_config` call {single * 1e6:.0f} µs "
            f"({1 / single:,.0f} configs/s)."]


def estimates() -> list[str]:
    """Swin-T on every known target; an estimate is only as good as the published figures behind
    its cost model, so it is labelled as such."""
    model = build_model("swin_t")
    space = search_space(model)
    lines = ["| target | source | dtype | 224 dense | 224 at 0.5 | 672 dense | 672 at 0.5 |",
             "|---|---|---|---:|---:|---:|---:|"]
    for name in list_hardware():
        p = LatencyPredictor.for_hardware(name)
        ms = [p.predict_config(model, (1, 3, r, r), c) for r in (224, 672) for c in (space.dense(), space.uniform(0.5))]
        source = "**estimated** from specs" if p.estimated else "measured"
        lines.append(f"| {name} | {source} | {p.learned_.dtype} | " + " | ".join(f"{v:.1f}" for v in ms) + " |")
    return ["Predicted Swin-T latency (ms, batch 1):\n", *lines]


def cache_edge(df: pd.DataFrame) -> list[str]:
    """swin_micro at 672 px, stage 1: its block pair timed alone vs whole models at uniform
    sparsity, around where the isolated pair's working set starts to fit a cache."""
    g = df[(df.model == "swin_micro") & (df.img_h == 672)]
    pairs = g[(g.layer == "block_pair") & (g.stage == 0)].set_index("sparsity")["p10_ms"]
    models = g[g.layer == "model"].set_index("config")["p10_ms"]
    rows = []
    for s in (0.1, 0.2, 0.3, 0.4):
        uniform = json.dumps([s] * 4)
        rows.append(f"| {s} | {pairs.get(s, float('nan')):.1f} | {models.get(uniform, float('nan')):.1f} |")
    return ["| sparsity | stage-1 pair alone, ms | whole model at uniform sparsity, ms |", "|---:|---:|---:|", *rows]


def per_model(pred: LatencyPredictor, df: pd.DataFrame) -> list[str]:
    """The held-out table split by model, so each block kind's accuracy shows on its own, with how
    much slower a whole model runs than the sum of its units measured alone (median, range over
    held-out configs): the whole-model scale the predictor fits per block kind."""
    rows = ["| model | block | configs | ±10 % | ±5 % | MAPE % | Spearman ρ | lookup table ±10 % "
            "| whole model / Σ measured units |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model in sorted(df.model.unique()):
        part = df[df.model == model]
        ev = pred.evaluate(part)
        held = pred.held_out(part)
        ratio = held[pred.learned_.statistic].to_numpy(float) / lookup_ms(part, held, pred.learned_.statistic)
        x, kind = ev["xgboost"], signature_block(part.signature.iloc[0]).upper()
        rows.append(f"| {model} | {kind} | {x['n']} | {x['within_10']:.1f} | {x['within_5']:.1f} | {x['mape']:.2f} "
                    f"| {x['spearman']:.3f} | {ev['lookup']['within_10']:.1f} | {np.nanmedian(ratio):.2f} "
                    f"({np.nanmin(ratio):.2f}-{np.nanmax(ratio):.2f}) |")
    return rows


def without_v2(pred: LatencyPredictor, df: pd.DataFrame) -> list[str]:
    """The same predictor refitted on the V1 rows alone, judged on the V2 models: what assuming V2
    units cost what V1's do (plus the analytic extra FLOPs) would give."""
    is_v2 = df.signature.map(lambda s: signature_block(s) == "v2")
    if not is_v2.any():
        return []
    v1_only = LatencyPredictor(**pred.get_params()).fit(df[~is_v2])
    rows = per_model(v1_only, df[is_v2])
    return ["Refitted on the V1 rows only (same parameters), judged on the V2 models' held-out configs:", "", *rows,
            ""]


def shipped_only(results: Path | None) -> None:
    lines = [SHIPPED_SECTION, "", "Produced by `python benchmarks/predictor_accuracy.py --shipped-only` on "
             f"{now_utc()} (reads the shipped profiles and predictors; measures nothing).", ""]
    for name, path in shipped_predictors().items():
        pred = LatencyPredictor.load(path)
        df = load_profiles(ROOT / "profiles" / name)
        ev = pred.evaluate(df)
        learned = pred.learned_
        lines += [f"### {name} ({pred!r}, threads {learned.threads}, {learned.fingerprint.get('clock')} clock)", "",
                  f"{ev['xgboost']['n']} held-out whole-model configs ({ev['excluded']} fitted the overhead):", "",
                  format_report(_report(ev)), "", "Per model:", "", *per_model(pred, df), "", *without_v2(pred, df),
                  "Isolated unit vs whole model, swin_micro 672 px:", "",
                  *cache_edge(df), ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if results:
        write_section(text, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", type=int, default=672, help="resolution left out of fitting (px)")
    parser.add_argument("--draws", type=int, default=5, help="random draws per calibration size")
    parser.add_argument("--noise-configs", type=int, default=24, help="configs re-measured for the ceiling (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measurement, as the profile was taken")
    parser.add_argument("--results", type=Path, help="write the section into this markdown file")
    parser.add_argument("--shipped-only", action="store_true",
                        help="only every shipped predictor on its own held-out configs, and the isolated-unit cache "
                             "edge (seconds; its own section)")
    args = parser.parse_args()
    if args.shipped_only:
        return shipped_only(args.results)

    lines = [SECTION, "", "Produced by `python benchmarks/predictor_accuracy.py`. Targets: ≥ 95 % of held-out "
             "whole-model configs within ±10 % and Spearman ≥ 0.95 on the CPU dataset.", ""]
    for name, path in shipped_predictors().items():
        pred = LatencyPredictor.load(path)
        profiles = ROOT / "profiles" / name
        if not profiles.is_dir():
            lines += [f"### {name}", f"No dataset at profiles/{name}: nothing to judge `{path.name}` on.", ""]
            continue
        df = load_profiles(profiles)
        counts = df[df.layer == "model"].groupby(["model", "img_h"]).size()
        lines += [f"### {name} ({pred!r}, threads {pred.learned_.threads})", "",
                  "Whole-model configs in the dataset: "
                  + ", ".join(f"{m} {h}px: {n}" for (m, h), n in counts.items()) + ".", "",
                  "#### Held-out configs", "", *shipped_tables(pred, df), "",
                  f"#### Resolution {args.held_out} left out of fitting", ""]
        held, _ = held_out_resolution(pred, df, args.held_out, CAL_SIZES, args.draws)
        noise = noise_ceiling(df, args.noise_configs, args.rounds, pred.learned_.statistic)
        lines += [*held, "", "#### Noise ceiling", "", *noise, "", "#### Throughput", "", *throughput(path), ""]
    lines += ["### All targets", "", *estimates(), ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        write_section(text, args.results)


if __name__ == "__main__":
    main()
