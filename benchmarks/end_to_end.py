"""End to end: what a user's whole model gains, predicted and measured, beside its backbone's speed-up.

    python benchmarks/end_to_end.py                 # every model at 512x512 and 1024x768 (~40 min, 2-core CPU)
    python benchmarks/end_to_end.py --sizes 512x512 --models timm demo --no-write

For each model (random weights, built the way its library builds it, then ``sparsify``):
``SearchSession(model, hw="local", latency_budget=0.7)`` on this CPU (budget: 70 % of the
whole model's predicted dense latency), then ``result.validate()``, which times the model as it
is called and its backbone, dense and at the searched config, side by side in the same rounds.
The table gives the backbone's share of the measured dense time, predicted vs measured
end-to-end latency and speed-up, and the backbone-only speed-up (what a backbone-only report
would have promised).  Configs are scored by the backbone's own agreement with its dense
features on two small probe images: the point here is latency, not accuracy.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from _results import now_utc, write_section

from sparsevit_sdk import SearchSession, build_model, sparse_backbone, sparsify
from sparsevit_sdk.accuracy import AgreementProxy
from sparsevit_sdk.demo import DemoSegmenter, probe_images

SIZES = ("512x512", "1024x768")
PLOT = Path(__file__).with_name("end_to_end.png")


def _swin_t_config(transformers, **kwargs):
    return transformers.SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                   **kwargs)


def timm_classifier() -> nn.Module:
    import timm

    return sparsify(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, dynamic_img_size=True))


def torchvision_classifier() -> nn.Module:
    import torchvision

    return sparsify(torchvision.models.swin_t(weights=None))


def hf_classifier() -> nn.Module:
    import transformers

    return sparsify(transformers.SwinForImageClassification(_swin_t_config(transformers, num_labels=1000)))


def hf_upernet() -> nn.Module:
    import transformers

    backbone = _swin_t_config(transformers, out_features=["stage1", "stage2", "stage3", "stage4"])
    model = transformers.UperNetForSemanticSegmentation(transformers.UperNetConfig(backbone_config=backbone,
                                                                                   num_labels=19))
    return sparsify(model, inplace=True)


def hf_mask2former() -> nn.Module:
    import transformers

    backbone = _swin_t_config(transformers, out_features=["stage1", "stage2", "stage3", "stage4"])
    model = transformers.Mask2FormerForUniversalSegmentation(
        transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=19))
    return sparsify(model, inplace=True)


def demo_segmenter() -> nn.Module:
    return DemoSegmenter(build_model("swin_micro"))


MODELS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "timm": ("timm swin_tiny_patch4_window7_224 (classifier)", timm_classifier),
    "torchvision": ("torchvision swin_t (classifier)", torchvision_classifier),
    "hf-swin": ("HF SwinForImageClassification (Swin-T)", hf_classifier),
    "hf-upernet": ("HF UperNetForSemanticSegmentation (Swin-T)", hf_upernet),
    "hf-mask2former": ("HF Mask2FormerForUniversalSegmentation (Swin-T)", hf_mask2former),
    "demo": ("demo segmenter (swin_micro + light FPN head)", demo_segmenter),
}


def run_case(key: str, size: tuple[int, int], *, repeats: int, rounds: int) -> dict:
    torch.manual_seed(0)
    model = MODELS[key][1]().eval()
    shape = (1, 3, *size)
    images, kind = probe_images((1, 3, 224, 224), num_images=2)
    proxy = AgreementProxy(sparse_backbone(model), images, name=f"backbone agreement ({kind}, 2x224x224)")
    start = time.perf_counter()
    search = dict(hw="local", latency_budget=0.7, input_shape=shape, proxy=proxy, population=12, parents=4,
                  generations=3, seed=0, progress=False)
    try:
        session, budget = SearchSession(model, **search), "0.7 of the model"
    except ValueError as err:  # Amdahl: the backbone is too small a share of this model for 0.7
        if "cannot be met end to end" not in str(err):
            raise
        bound = re.search(r"the most any config can reach is ([0-9.]+x)", str(err)).group(1)
        print(f"refused: {err}", flush=True)
        session = SearchSession(model, budget_of="backbone", **search)
        budget = f"refused (max {bound}); 0.7 of the backbone"
    result = session.run()
    searched_s = time.perf_counter() - start
    report = result.validate(repeats=repeats, warmup=1, rounds=rounds)
    print(result.summary(), report, sep="\n", flush=True)
    return {
        "model": MODELS[key][0], "size": f"{size[0]}x{size[1]}", "call": report.call, "best": str(result.best),
        "budget": budget,
        "dense_ms": report.dense_ms, "dense_predicted_ms": report.dense_predicted_ms,
        "sparse_ms": report.sparse_ms, "predicted_ms": report.predicted_ms,
        "speedup": report.speedup, "predicted_speedup": report.predicted_speedup,
        "backbone_speedup": report.backbone_speedup, "backbone_predicted_speedup": report.backbone_predicted_speedup,
        "rest_ms": result.rest.ms, "searched_s": searched_s, "threads": report.threads, "clock": report.clock,
    }


def table(rows: list[dict]) -> str:
    lines = ["| model | input | backbone share of dense (rest) | budget 0.7 | searched config | end to end: "
             "predicted / measured ms (error) | end-to-end speed-up: predicted / measured | backbone-only speed-up: "
             "predicted / measured |", "|---|---|---:|---|---|---|---|---|"]
    for r in rows:
        err = r["predicted_ms"] / r["sparse_ms"] - 1
        dense_err = r["dense_predicted_ms"] / r["dense_ms"] - 1
        share = 1 - r["rest_ms"] / r["dense_predicted_ms"]
        lines.append(
            f"| {r['model']} | {r['size']} | {share:.0%} ({r['rest_ms']:.4g} ms) | {r['budget']} | {r['best']} | dense "
            f"{r['dense_predicted_ms']:.4g} / {r['dense_ms']:.4g} ({dense_err:+.1%}); best {r['predicted_ms']:.4g} / "
            f"{r['sparse_ms']:.4g} ({err:+.1%}) | {r['predicted_speedup']:.2f}x / {r['speedup']:.2f}x | "
            f"{r['backbone_predicted_speedup']:.2f}x / {r['backbone_speedup']:.2f}x |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax = fig.subplots()
    short = {title: key for key, (title, _) in MODELS.items()}
    labels = [f"{short[r['model']]}\n{r['size']}" for r in rows]
    x = torch.arange(len(rows)).numpy()
    for i, (column, name) in enumerate((("predicted_speedup", "end to end, predicted"),
                                        ("speedup", "end to end, measured"),
                                        ("backbone_speedup", "backbone alone, measured"))):
        ax.bar(x + (i - 1) * 0.27, [r[column] for r in rows], 0.27, label=name)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylabel="speed-up over dense", title="searched config, budget 0.7 of the whole model (hw='local')")
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per round in validation")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    parser.add_argument("--reuse-cache", action="store_true",
                        help="reuse calibrations cached earlier (default: calibrate in this run, in a fresh cache)")
    args = parser.parse_args()
    if not args.reuse_cache:  # predictions judged on the device, and in the run, they were calibrated in
        os.environ["SPARSEVIT_CACHE"] = tempfile.mkdtemp(prefix="sparsevit-e2e-")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("sparsevit_sdk.search.session").setLevel(logging.ERROR)  # the 'no proxy' style notes
    started, start = now_utc(), time.perf_counter()
    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        for key in args.models:
            print(f"--- {MODELS[key][0]} at {size}", flush=True)
            rows.append(run_case(key, (h, w), repeats=args.repeats, rounds=args.rounds))
    print(table(rows))
    if not args.no_write:
        write_results(rows, started, (time.perf_counter() - start) / 60, args.rounds, args.repeats)


def write_results(rows: list[dict], started: str, minutes: float, rounds: int, repeats: int) -> None:
    """The plot and this benchmark's section of RESULTS.md."""
    plot(rows, PLOT)
    worst = max(abs(r["predicted_ms"] / r["sparse_ms"] - 1) for r in rows)
    worst_dense = max(abs(r["dense_predicted_ms"] / r["dense_ms"] - 1) for r in rows)
    write_section(
        f"## End to end: the whole model, predicted and measured\n\n"
        f"`python benchmarks/end_to_end.py` on {platform.machine()} ({_cpu_name()}), torch {torch.__version__}, "
        f"started {started}, took {minutes:.0f} min. Each model has random weights; "
        f"`SearchSession(model, hw=\"local\", latency_budget=0.7)` (budget: 70 % of the whole model's predicted dense "
        f"latency; the backbone's predictor calibrated on this CPU in this run, the rest measured here at sparsity 0; "
        f"where Amdahl's law puts 0.7 out of reach the session refuses it, naming the bound, and the benchmark "
        f"searches with `budget_of=\"backbone\"` instead), then `result.validate()`: the model as it is called and "
        f"its backbone, dense and at the searched config, timed side by side in the same {rounds} rounds of "
        f"{repeats} calls ({rows[0]['threads']} thread, {rows[0]['clock']} clock, p10, lowest round). The backbone's "
        f"share is the predicted dense latency less the measured rest.\n\n{table(rows)}\n\n"
        f"Worst end-to-end prediction error: {worst:.1%} at the searched configs, {worst_dense:.1%} dense "
        f"(target: within ±10 %).\n\n![speed-ups]({PLOT.name})\n")


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    main()
