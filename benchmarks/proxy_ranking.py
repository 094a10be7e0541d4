"""Accuracy proxies: does a cheap proxy rank sparsity configs the way the true metric does?

On the demo task, the supernet of ``train_demo_supernet`` (the recipe of
``examples/train_supernet.py``) scores ``--configs`` configs drawn with
``SearchSpace.sample`` three ways:

- true metric: test mIoU on ``--test-images`` canvases (digits disjoint from train and val);
- labelled proxy: ``AccuracyProxy``, val mIoU on a small calibration set (``--val-images``);
- label-free proxy: ``AgreementProxy``, agreement of the sparse model's outputs with its
  dense outputs on ``--probe-images`` val canvases (cosine of logits and exp(-KL)), no labels.

It reports Spearman's rho of each proxy against the true metric, plus what adaptation buys:
test mIoU at uniform sparsity for the dense-trained model and for the supernet adapted
without and with the sandwich rule (same steps, same seed), and without it for three times
the steps (the sandwich's compute).

    python benchmarks/proxy_ranking.py [--configs 40] [--quick] [--no-write]

Writes the ``## Accuracy proxies`` section of benchmarks/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from _results import now_utc, write_section
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from sparsevit_sdk import search_space
from sparsevit_sdk.accuracy import AccuracyProxy, AgreementProxy, MeanIoU
from sparsevit_sdk.demo import NUM_CLASSES, DemoRecipe, train_demo_supernet
from sparsevit_sdk.profiler import device_fingerprint, num_threads

CACHE = Path.home() / ".cache" / "sparsevit_sdk"
SPARSITIES = (0.0, 0.3, 0.5, 0.7)


def mean_iou(model: torch.nn.Module, loader, name: str, num_classes: int = NUM_CLASSES) -> AccuracyProxy:
    """mIoU over the task's ``num_classes`` (the digit demo's by default; a recipe's ``num_classes`` for its task)."""
    return AccuracyProxy(model, loader, metric=MeanIoU(num_classes), name=name)


def adaptation_table(recipe: DemoRecipe, test_images: int) -> tuple[list[str], dict[str, float], tuple[float, float]]:
    """Test mIoU at uniform sparsity: dense-trained vs adapted without / with the sandwich rule, and
    without it for 3x the steps (a sandwich step is three passes: the equal-compute comparison)."""
    plain = train_demo_supernet(recipe, cache_dir=CACHE)
    sandwich = train_demo_supernet(dataclasses.replace(recipe, sandwich=True), cache_dir=CACHE)
    longer = train_demo_supernet(dataclasses.replace(recipe, adapt_steps=3 * recipe.adapt_steps), cache_dir=CACHE)
    test = recipe.loader("test", test_images)
    space = search_space(plain.adapted)
    models = (plain.dense, plain.adapted, sandwich.adapted, longer.adapted)
    scores = [mean_iou(m, test, "test mIoU") for m in models]
    rows = []
    for s in SPARSITIES:
        values = [p(space.uniform(s)) for p in scores]
        rows.append(f"| {s:.1f} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    means = {name: float(np.mean([p(space.uniform(s)) for s in SPARSITIES[1:]]))
             for name, p in zip(("dense-trained", "adapted", "adapted (sandwich)", "adapted (3x steps)"), scores)}
    return rows, means, (scores[1](space.dense()), scores[3](space.dense()))


def run(args: argparse.Namespace) -> str:
    recipe = DemoRecipe.quick(seed=args.seed) if args.quick else DemoRecipe(seed=args.seed)
    start = time.perf_counter()
    net = train_demo_supernet(recipe, cache_dir=CACHE)
    model = net.adapted
    space = search_space(model)
    rng = np.random.default_rng(args.seed)
    configs = list(dict.fromkeys(space.sample(rng) for _ in range(args.configs)))
    test = mean_iou(model, recipe.loader("test", args.test_images), "test mIoU")
    val = mean_iou(model, recipe.loader("val", args.val_images), "val mIoU")
    probe = torch.cat([x for x, _ in recipe.loader("val", args.probe_images, seed=args.seed + 1)])
    proxies = {
        f"val mIoU ({args.val_images} labelled canvases)": val,
        f"agreement, cosine ({args.probe_images} unlabelled canvases)": AgreementProxy(model, probe, measure="cosine"),
        f"agreement, exp(-KL) ({args.probe_images} unlabelled canvases)": AgreementProxy(model, probe, measure="kl"),
    }
    truth, scores = [], {name: [] for name in proxies}
    cost = dict.fromkeys(proxies, 0.0)
    for cfg in tqdm(configs, desc="configs"):
        truth.append(test(cfg))
        for name, proxy in proxies.items():
            t0 = time.perf_counter()
            scores[name].append(proxy(cfg))
            cost[name] += time.perf_counter() - t0
    rows = [f"| {name} | {spearmanr(values, truth).statistic:.3f} | {1e3 * cost[name] / len(configs):.0f} |"
            for name, values in scores.items()]
    adapt_rows, means, (short_dense, long_dense) = adaptation_table(recipe, args.test_images)
    dense_truth = test(space.dense())
    return "\n".join([
        "## Accuracy proxies",
        "",
        f"`python benchmarks/proxy_ranking.py{' --quick' if args.quick else ''}` on "
        f"{device_fingerprint('cpu')['name']}, torch {torch.__version__}, {now_utc()}, seed {args.seed}, "
        f"{time.perf_counter() - start:.0f} s in all (trained weights cached in `{CACHE}`).  Demo task: digit "
        f"segmentation on {recipe.size}x{recipe.size} canvases, {recipe.digits_per_image[0]}-"
        f"{recipe.digits_per_image[1]} digits of {recipe.digit_px[0]}-{recipe.digit_px[1]} px, one per "
        f"{recipe.cell}-px cell.  `{recipe.backbone}` + demo head (`train_demo_supernet`, batch {recipe.batch_size}) "
        f"trained dense for {recipe.pretrain_steps} steps on {recipe.pretrain_size}px canvases (lr "
        f"{recipe.pretrain_lr:g}) and {recipe.finetune_steps} on {recipe.size}px (lr {recipe.finetune_lr:g}), then "
        f"adapted for {recipe.adapt_steps} steps (lr {recipe.adapt_lr:g}) with a random config per step.",
        "",
        f"### What adaptation buys (test mIoU, {args.test_images} canvases)",
        "",
        f"| uniform sparsity | dense-trained | adapted | adapted, sandwich rule | adapted, {3 * recipe.adapt_steps} "
        "steps |",
        "|---:|---:|---:|---:|---:|",
        *adapt_rows,
        "",
        "Mean over sparsity 0.3/0.5/0.7: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()) + ".  The sandwich "
        "rule adds the dense and the sparsest config to every step: 3 forward/backward passes instead of 1, so it "
        "spends 3x the compute of the same number of steps; the last column spends that compute on 3x the steps "
        f"without it, the fair comparison.  Those steps also lift the dense score ({short_dense:.3f} to "
        f"{long_dense:.3f}): after {recipe.adapt_steps} steps the demo model is still learning the task, so part of "
        "the gain is more training, not only robustness to skipped windows.",
        "",
        f"### Ranking {len(configs)} sampled configs (adapted supernet, no sandwich)",
        "",
        f"True metric: test mIoU on {args.test_images} canvases (range {min(truth):.3f}-{max(truth):.3f}; "
        f"dense {dense_truth:.3f}).",
        "",
        "| proxy | Spearman ρ vs test mIoU | ms per config |",
        "|---|---:|---:|",
        *rows,
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=40, help="configs to sample (>= 30 for the issue)")
    parser.add_argument("--test-images", type=int, default=96)
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--probe-images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the quick recipe and few configs: a smoke test")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave RESULTS.md alone")
    args = parser.parse_args()
    if args.quick:
        args.configs, args.test_images, args.val_images, args.probe_images = 8, 8, 4, 4
    with num_threads(1):  # fastest on a shared 2-core machine
        section = run(args)
    print(section)
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    main()
