"""Accuracy kept at a measured speed-up: four recipes on the demo task, at the same number of optimiser steps.

The demo model (``swin_micro`` + demo head, ``train_demo_supernet``: dense phases trained in
cosine cycles until val mIoU plateaus) is adapted on 224x224 canvases and searched and scored
on 448x448 ones (mostly background, the regime window skipping is for).  For each latency
budget (a fraction of the dense model's latency as the ``hw="local"`` predictor prices it on
this CPU) four recipes pick a config:

- ``uniform``: the uniform sparsity with the best proxy score among those whose *measured*
  latency is no more than the fine-tuned pick's, on the distilled supernet (N + M steps);
- ``adapt``: today's recipe, adapt (no teacher) for N + M steps, then search;
- ``adapt+distill``: adapt with in-place distillation for N + M steps, then search;
- ``adapt+distill+finetune``: adapt with distillation for N steps, search, then fine-tune the
  chosen config with distillation for M steps (SparseViT's last step);
- ``training-free (norm)``, ``training-free (deviation)``: no adaptation at all, the dense-trained
  model ranking windows by each score (``set_window_score``), searched the same way: what a user
  who cannot train keeps.

Every search uses the same label-free proxy (exp(-KL) of sparse vs dense logits on a few
unlabelled val canvases) and settings.  Each pick is timed on the real kernels, all configs
side by side in interleaved rounds (one thread, thread CPU clock, p10), and scored by test mIoU
as a share of the dense-trained model's.  ``--terms`` runs the other part instead: which
distillation term to use for segmentation logits, each with the same loop, steps and configs.

    python benchmarks/accuracy_tradeoff.py [--adapt-steps 600] [--finetune-steps 300] [--quick] [--no-write]
    python benchmarks/accuracy_tradeoff.py --task textures   # the texture task, where no window is empty
    python benchmarks/accuracy_tradeoff.py --terms [--term-steps 300]
    python benchmarks/accuracy_tradeoff.py --step-cost       # seconds per step of each recipe's training

Writes the ``## Accuracy kept`` (and ``## Distillation terms``) section of benchmarks/RESULTS.md
and ``accuracy_tradeoff.png``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _results import now_utc, write_section  # noqa: E402
from proxy_ranking import CACHE, mean_iou  # noqa: E402
from search_quality import SEARCH_SIZE, Settings, measured_ms  # noqa: E402

from sparsevit_sdk import (  # noqa: E402
    LatencyPredictor,
    SearchResult,
    SearchSession,
    SearchSpace,
    SparsityConfig,
    search_space,
    set_sparsity,
)
from sparsevit_sdk.accuracy import (
    AgreementProxy,
    Distillation,
    SparsityAdapter,
    adapt,
    class_kl,
    feature_nmse,
    finetune,
)
from sparsevit_sdk.demo import TASKS, DemoRecipe, segmentation_loss, train_demo_supernet
from sparsevit_sdk.local import for_device  # noqa: E402
from sparsevit_sdk.profiler import device_fingerprint, num_threads  # noqa: E402
from sparsevit_sdk.sparse import WINDOW_SCORES, SparseSwinStage, set_window_score  # noqa: E402

logger = logging.getLogger("accuracy_tradeoff")
def plot_path() -> Path:
    teacher = "" if FINETUNE_TEACHER == "frozen" else "_in_place"
    return Path(__file__).with_name("accuracy_tradeoff" + task_tag("_") + suffix("_") + teacher + ".png")


def suffix(sep: str) -> str:
    """What tells a run with another window score apart: in headings, file names and the command."""
    return "" if RECIPE.window_score == DemoRecipe.window_score else f"{sep}{RECIPE.window_score}"


def task_tag(sep: str) -> str:
    """What tells a run on another task than the digits apart: in headings, file names and the command."""
    return "" if RECIPE.task == "digits" else f"{sep}{RECIPE.task}"


def teacher_flag() -> str:
    return "" if FINETUNE_TEACHER == "frozen" else f" --finetune-teacher {FINETUNE_TEACHER}"
RECIPES = ("adapt", "adapt+distill", "adapt+distill+finetune")
FREE = tuple(f"training-free ({measure})" for measure in WINDOW_SCORES)  # no adaptation, one row per window score


@dataclasses.dataclass
class Row:
    budget: float
    recipe: str
    config: SparsityConfig
    miou: float
    proxy: float
    predicted_speedup: float
    measured_ms: float = float("nan")
    before_finetune: float | None = None  # test mIoU of the supernet at the same config


def search(model, budget: float, predictor: LatencyPredictor, settings: Settings, seed: int) -> SearchResult:
    proxy = AgreementProxy(model, probe(settings), measure="kl", name="agreement-kl(val)")
    return SearchSession(model, predictor, latency_budget=budget, proxy=proxy,
                         input_shape=(1, 3, SEARCH_SIZE, SEARCH_SIZE), population=settings.population,
                         parents=settings.parents, generations=settings.generations, seed=seed,
                         progress=False).run()


def test_batches(num_images: int) -> list:
    """The test canvases, drawn once: every model and config below is scored on these same batches."""
    return list(RECIPE.loader("test", num_images, size=SEARCH_SIZE))


def miou_on(model, test: list):
    """The proxy that scores ``model`` by mIoU on the ``test`` batches, over the task's classes."""
    return mean_iou(model, test, "test mIoU", RECIPE.num_classes)


def probe(settings: Settings) -> torch.Tensor:
    images = RECIPE.loader("val", settings.probe_images, size=SEARCH_SIZE, batch_size=settings.probe_images)
    return next(iter(images))[0]


def step_cost(args: argparse.Namespace) -> str:
    """Seconds per optimiser step of each recipe's training, interleaved rounds on the same batches."""
    dense = train_demo_supernet(dataclasses.replace(RECIPE, adapt_steps=0), cache_dir=CACHE).dense
    space = search_space(dense)
    batches = list(itertools.islice(RECIPE.loader("train", 1_000_000, seed=RECIPE.seed + 1), args.cost_steps))
    n = len(batches)
    kinds: dict[str, Callable] = {
        "adapt, labels only": lambda m: adapt(m, batches, segmentation_loss, n, progress=False),
        "adapt + distillation (in-place teacher)": lambda m: adapt(m, batches, segmentation_loss, n, distill=True,
                                                                   progress=False),
        "finetune at uniform 0.5 + distillation (frozen teacher)": lambda m: finetune(
            m, batches, segmentation_loss, n, config=space.uniform(0.5), distill=True, progress=False),
    }
    best = dict.fromkeys(kinds, float("inf"))
    for _ in range(args.cost_rounds):
        for name, train in kinds.items():
            model = copy.deepcopy(dense)
            start = time.thread_time()
            train(model)
            best[name] = min(best[name], (time.thread_time() - start) / n)
    base = best["adapt, labels only"]
    return "\n".join([
        "## Accuracy kept: cost of a step", "",
        f"`python benchmarks/accuracy_tradeoff.py --step-cost` on {device_fingerprint('cpu')['name']}, {now_utc()}: "
        f"{n} steps of batch {RECIPE.batch_size} on {RECIPE.size}px canvases per run, one thread, thread CPU time, "
        f"fastest of {args.cost_rounds} interleaved rounds (a fine-tuning run includes copying its frozen teacher).",
        "", "| training | s per step | vs labels only |", "|---|---:|---:|",
        *(f"| {name} | {sec:.3f} | {sec / base:.2f}x |" for name, sec in best.items())])


def terms_table(args: argparse.Namespace) -> str:
    start = time.perf_counter()
    dense = train_demo_supernet(dataclasses.replace(RECIPE, adapt_steps=0), cache_dir=CACHE).dense
    test = test_batches(args.test_images)
    rows = ablation(RECIPE, dense, args.term_steps, test, search_space(dense))
    return "\n".join([
        "## Distillation terms", "",
        f"`python benchmarks/accuracy_tradeoff.py --terms --term-steps {args.term_steps}` on "
        f"{device_fingerprint('cpu')['name']}, {now_utc()}, {(time.perf_counter() - start) / 60:.0f} min.  The "
        f"dense demo model of \"Accuracy kept\" adapted for {args.term_steps} steps (batch {RECIPE.batch_size}, "
        "224px canvases, one random config per step drawn under the same seed, lr and cosine schedule) with each "
        "term added to the label loss, through `SparsityAdapter` in a plain loop; test mIoU on "
        f"{args.test_images} canvases of {SEARCH_SIZE}px at uniform sparsity.", "",
        "| term added to the label loss | test mIoU at 0.3 | 0.5 | 0.7 | mean | wall s |",
        "|---|---:|---:|---:|---:|---:|", *rows])


def diagnose(args: argparse.Namespace) -> str:
    """Where a fine-tuned pick loses accuracy: per knob, per error kind, per stage's pruned windows.

    Rebuilds the pick's fine-tuned model exactly as :func:`run` does (same supernet, loader and
    seed), then scores it with one knob at a time at the pick's value, counts the kinds of pixel
    errors, and records the windows each stage's first (regular) block kept on the test canvases.
    """
    start = time.perf_counter()
    net = train_demo_supernet(dataclasses.replace(RECIPE, adapt_steps=args.adapt_steps), cache_dir=CACHE)
    space = search_space(net.adapted)
    cfg = space.config(args.diagnose)
    model, in_place = copy.deepcopy(net.adapted), copy.deepcopy(net.adapted)
    finetune_pick(model, cfg, args.finetune_steps)
    finetune_pick(in_place, cfg, args.finetune_steps, teacher="in-place")
    tuned = [("distilled supernet", net.adapted), ("after fine-tuning (frozen teacher: the supernet at sparsity 0)",
                                                   model), ("after fine-tuning (in-place teacher)", in_place)]
    test = test_batches(args.test_images)
    lines = ["## Accuracy kept: where it is lost" + suffix(", window score "), "",
             f"`python benchmarks/accuracy_tradeoff.py --diagnose {' '.join(map(str, args.diagnose))}"
             f"{suffix(' --window-score ')}` on "
             f"{device_fingerprint('cpu')['name']}, {now_utc()}, {(time.perf_counter() - start) / 60:.0f} min. The "
             f"pick {cfg} of \"Accuracy kept\", rebuilt the same way; test mIoU on {args.test_images} canvases of "
             f"{SEARCH_SIZE}px.", "",
             "| model | dense | pick | " + " | ".join(f"knob {i + 1} alone ({r})" for i, r in enumerate(cfg.ratios))
             + " |", "|---|" + "---:|" * (2 + len(cfg.ratios))]
    for name, m in tuned:
        score = miou_on(m, test)
        alone = [space.config([r if j == i else 0.0 for j in range(len(cfg.ratios))]) for i, r in
                 enumerate(cfg.ratios)]
        lines.append(f"| {name} | {score(space.dense()):.4f} | {score(cfg):.4f} | "
                     + " | ".join(f"{score(c):.4f}" for c in alone) + " |")
    lines += ["", "The fine-tuned model ranked by each window score (the scoring it was trained with: "
              f"{RECIPE.window_score!r}; the other is a what-if, no retraining):", "",
              "| window score | test mIoU at the pick | background px called a digit | digit px called background "
              "| digit px called another digit |", "|---|---:|---:|---:|---:|"]
    tables = {}
    for measure in WINDOW_SCORES:
        set_window_score(model, measure)
        errors, tables[measure] = pixel_errors_and_windows(model, cfg, space, test)
        e = errors[str(cfg)]
        lines.append(f"| {measure} | {miou_on(model, test)(cfg):.4f} | {e[0]:.2%} | {e[1]:.2%} | "
                     f"{e[2]:.2%} |")
    set_window_score(model, RECIPE.window_score)
    e = errors["dense"]
    lines.append(f"| (dense) | {miou_on(model, test)(space.dense()):.4f} | {e[0]:.2%} | {e[1]:.2%} | "
                 f"{e[2]:.2%} |")
    lines += ["", "| window score | stage | windows | kept by its first block | windows holding digit pixels "
              "(mean per image) | digit tokens in pruned windows |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {measure} | {i + 1} | {w[0]} | {w[1]} | {w[2]:.1f} | {w[3]:.1%} |"
              for measure, table in tables.items() for i, w in enumerate(table)]
    return "\n".join(lines)


def finetune_pick(model, cfg: SparsityConfig, steps: int, teacher: str | None = None) -> None:
    """SparseViT's last step, as ``SearchResult.finetune`` runs it, for :func:`run` and :func:`diagnose` alike."""
    finetune(model, RECIPE.loader("train", 1_000_000, seed=RECIPE.seed + 2), segmentation_loss, steps, config=cfg,
             distill=Distillation(teacher=teacher or FINETUNE_TEACHER), lr=RECIPE.adapt_lr, seed=RECIPE.seed,
             progress=False)


def pixel_errors_and_windows(model, cfg: SparsityConfig, space: SearchSpace, test):
    """Pixel error kinds at dense and at ``cfg``; per stage: windows, kept, mean windows with digit
    pixels per image, and the share of digit tokens in windows the first block pruned."""
    kept: list = []
    original = SparseSwinStage.select

    def record(stage, x, layout):
        ids = original(stage, x, layout)
        kept.append((layout, ids[0]))
        return ids

    errors = {}
    counts = [[0, 0, 0.0, 0, 0] for _ in cfg.ratios]  # windows, kept, digit windows, digit tokens, pruned ones
    images = 0
    with torch.inference_mode():
        for name, c in (("dense", space.dense()), (str(cfg), cfg)):
            set_sparsity(model, c)
            wrong = torch.zeros(3)
            total = torch.zeros(3)
            for x, y in test:
                kept.clear()
                SparseSwinStage.select = record
                try:
                    pred = model(x).argmax(1)
                finally:
                    SparseSwinStage.select = original
                bg = y == 0
                wrong += torch.tensor([(pred[bg] != 0).sum(), (pred[~bg] == 0).sum(),
                                       ((pred[~bg] != 0) & (pred[~bg] != y[~bg])).sum()], dtype=torch.float)
                total += torch.tensor([bg.sum(), (~bg).sum(), (~bg).sum()], dtype=torch.float)
                if c == cfg:
                    images += len(x)
                    for i, (layout, ids) in enumerate(kept):
                        assert layout.valid is None, "a padded stage: pool the mask to its padded grid"
                        stride = SEARCH_SIZE // layout.height
                        digit = F.max_pool2d((~bg).float()[:, None], stride)[:, 0].flatten(1) > 0  # (B, Hp*Wp)
                        in_window = digit[:, layout.regular]  # (B, nW, N)
                        has_digit = in_window.any(2)  # (B, nW)
                        pruned = torch.zeros_like(has_digit) if ids is None else torch.ones_like(has_digit).scatter_(
                            1, ids, False)
                        counts[i][0] = layout.num_windows
                        counts[i][1] = layout.num_windows if ids is None else ids.shape[1]
                        counts[i][2] += float(has_digit.sum())
                        counts[i][3] += int(in_window.sum())
                        counts[i][4] += int((in_window & pruned[:, :, None]).sum())
            errors[name] = (wrong / total).tolist()
        set_sparsity(model, space.dense())
    windows = [(w, k, d / images, p / max(t, 1)) for w, k, d, t, p in counts]
    return errors, windows


def ablation(recipe: DemoRecipe, dense, steps: int, test, space: SearchSpace) -> list[str]:
    """Same loop, steps and configs for each distillation term on the segmentation logits (or the
    backbone's stage maps); scored by mean test mIoU over uniform sparsity 0.3 / 0.5 / 0.7."""
    maps: list = []

    def capture(module, args, output):
        maps.append(output)

    terms: dict[str, Callable | None] = {
        "labels only": None,
        "per-pixel KL, T=1": lambda s, t, sm, tm: class_kl(s, t, 1.0),
        "per-pixel KL, T=2": lambda s, t, sm, tm: class_kl(s, t, 2.0),
        "normalised MSE on logits": lambda s, t, sm, tm: feature_nmse(s, t),
        "normalised MSE on the 4 stage maps": lambda s, t, sm, tm: torch.stack(
            [feature_nmse(a, b) for a, b in zip(sm, tm)]).mean(),
    }
    rows = []
    for name, term in terms.items():
        model = copy.deepcopy(dense).train()
        handle = model.backbone.register_forward_hook(capture)
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.adapt_lr, weight_decay=0.05)
        adapter = SparsityAdapter(model, distill=True, seed=recipe.seed)  # the hook: a plain loop of our own
        batches = iter(recipe.loader("train", 1_000_000, seed=recipe.seed + 1))
        start = time.perf_counter()
        for step in range(steps):
            x, y = next(batches)
            for group in opt.param_groups:  # cosine decay as in adapt(), without its warm-up
                group["lr"] = recipe.adapt_lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            maps.clear()
            adapter.step()
            out = model(x)
            loss = segmentation_loss(out, y)
            if term is not None:
                teacher = adapter.teacher_outputs(x)
                loss = loss + term(out, teacher, maps[0], [m.detach() for m in maps[1]])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        handle.remove()
        adapter.restore()
        model.eval()
        score = miou_on(model, test)
        values = [score(space.uniform(s)) for s in (0.3, 0.5, 0.7)]
        rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values)
                    + f" | {sum(values) / 3:.3f} | {time.perf_counter() - start:.0f} |")
        logger.info("ablation %s: %s", name, rows[-1])
    return rows


def plot(rows: list[Row], uniform: list[tuple[float, float]], dense: tuple[float, float]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(*zip(*sorted(uniform)), "o-", color="0.6", label="uniform sparsity (distilled supernet)")
    for recipe, marker in zip((*RECIPES, *FREE), "s^Dvx"):
        points = sorted((r.measured_ms, r.miou) for r in rows if r.recipe == recipe)
        ax.plot(*zip(*points), marker, label=recipe, markersize=7)
    ax.plot(*dense, "k*", markersize=12, label="dense")
    ax.axhline(0.99 * dense[1], color="k", lw=0.6, ls=":", label="99 % of dense")
    ax.set_xlabel(f"measured latency, ms ({SEARCH_SIZE}x{SEARCH_SIZE}, 1 thread)")
    ax.set_ylabel("test mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path(), dpi=110)


def run(args: argparse.Namespace) -> str:
    start = time.perf_counter()
    settings = Settings.quick() if args.quick else Settings(test_images=args.test_images)
    n, m = args.adapt_steps, args.finetune_steps
    base = RECIPE
    nets = {
        "adapt": train_demo_supernet(dataclasses.replace(base, adapt_steps=n + m, distill=None), cache_dir=CACHE),
        "adapt+distill": train_demo_supernet(dataclasses.replace(base, adapt_steps=n + m), cache_dir=CACHE),
        "adapt+distill+finetune": train_demo_supernet(dataclasses.replace(base, adapt_steps=n), cache_dir=CACHE),
    }
    dense = nets["adapt"].dense
    curve = nets["adapt"].dense_curve
    trained_s = time.perf_counter() - start
    test = test_batches(settings.test_images)
    space = search_space(dense)
    dense_miou = miou_on(dense, test)(space.dense())
    predictor = for_device(dense.backbone, (1, 3, SEARCH_SIZE, SEARCH_SIZE), "cpu", threads=1,
                                            progress=False)
    rows: list[Row] = []
    finetune_s = 0.0
    for budget in args.budgets:
        for recipe in RECIPES:
            model = nets[recipe].adapted
            result = search(model, budget, predictor, settings, args.seed)
            before = None
            if recipe.endswith("finetune"):
                before = miou_on(model, test)(result.best)
                model = copy.deepcopy(model)
                t = time.perf_counter()
                finetune_pick(model, result.best, m)
                finetune_s += time.perf_counter() - t
            miou = miou_on(model, test)(result.best)
            rows.append(Row(budget, recipe, result.best, miou, result.score, result.predicted_speedup,
                            before_finetune=before))
            logger.info("budget %.2f %s: %s test mIoU %.4f", budget, recipe, result.best, miou)
        for measure, recipe in zip(WINDOW_SCORES, FREE):
            model = set_window_score(copy.deepcopy(dense), measure)
            result = search(model, budget, predictor, settings, args.seed)
            rows.append(Row(budget, recipe, result.best, miou_on(model, test)(result.best), result.score,
                            result.predicted_speedup))
    # latency: every pick and every uniform config, side by side in the same rounds
    uniform = [space.uniform(g) for g in space.grid]
    configs = list(dict.fromkeys([space.dense(), *uniform, *(r.config for r in rows)]))
    with num_threads(1):
        ms = dict(zip(configs, measured_ms(dense.backbone, configs, settings)))
    for r in rows:
        r.measured_ms = ms[r.config]
    distilled = nets["adapt+distill"].adapted
    uniform_score = miou_on(distilled, test)
    uniform_proxy = AgreementProxy(distilled, probe(settings), measure="kl")
    uniform_points = [(ms[c], uniform_score(c)) for c in uniform]
    dense_ms = ms[space.dense()]
    for budget in args.budgets:
        final = next(r for r in rows if r.budget == budget and r.recipe == RECIPES[-1])
        within = [c for c in uniform if ms[c] <= final.measured_ms] or [uniform[0]]
        best = max(within, key=uniform_proxy)
        dense_pred, best_pred = predictor.predict_configs(dense.backbone, (1, 3, SEARCH_SIZE, SEARCH_SIZE),
                                                          [space.dense(), best])
        rows.append(Row(budget, "uniform", best, uniform_score(best), uniform_proxy(best), dense_pred / best_pred,
                        ms[best]))
    if not args.no_write:  # a --no-write smoke test leaves the committed plot alone
        plot(rows, uniform_points, (dense_ms, dense_miou))
    return report(args, rows, dense_miou, dense_ms, curve, trained_s, finetune_s, time.perf_counter() - start)


def report(args, rows: list[Row], dense_miou: float, dense_ms: float, curve, trained_s: float, finetune_s: float,
           wall_s: float) -> str:
    fp = device_fingerprint("cpu")
    order = ("uniform", *RECIPES, *FREE)
    lines = [
        "## Accuracy kept" + task_tag(", task ") + suffix(", window score ")
        + ("" if FINETUNE_TEACHER == "frozen" else ", fine-tuned with the in-place teacher"),
        "",
        f"`python benchmarks/accuracy_tradeoff.py --adapt-steps {args.adapt_steps} --finetune-steps "
        f"{args.finetune_steps}{task_tag(' --task ')}{suffix(' --window-score ')}{teacher_flag()}` on {fp['name']} "
        f"({', '.join(fp['isa'])}; "
        f"fingerprint {fp['fingerprint_id']}), "
        f"torch {torch.__version__}, {now_utc()}, seed "
        f"{args.seed}, {wall_s / 60:.0f} min in all ({trained_s / 60:.0f} min loading or training the supernets, "
        f"{finetune_s / 60:.0f} min fine-tuning).  {RECIPE.task.capitalize()} task, `swin_micro` + demo head; "
        "adapted on 224x224 canvases, "
        f"searched, timed and scored on {SEARCH_SIZE}x{SEARCH_SIZE}.  Dense model: {dense_curve(curve)}.  "
        f"Test mIoU on {args.test_images} canvases, dense **{dense_miou:.4f}**; dense measured {dense_ms:.1f} ms "
        "(one thread, thread CPU clock, p10, fastest of interleaved rounds; every config below timed in the same "
        "rounds).  Optimiser steps per recipe: N + M = "
        f"{args.adapt_steps} + {args.finetune_steps} (batch {RECIPE.batch_size}); a distillation step adds one "
        "no-grad dense forward; the training-free rows take none (the dense-trained model, each window score, "
        "timed in the recipe's).  Search: label-free proxy exp(-KL) on 8 val canvases, population 16, 4 parents, 4 "
        "generations; budgets are fractions of the dense latency priced by `hw=\"local\"`.",
        "",
        "| budget | recipe | config | measured ms | measured speed-up | predicted speed-up | test mIoU | "
        "share of dense |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for budget in args.budgets:
        for recipe in order:
            r = next(r for r in rows if r.budget == budget and r.recipe == recipe)
            lines.append(f"| {budget} | {recipe} | {r.config} | {r.measured_ms:.1f} | {dense_ms / r.measured_ms:.2f}x "
                         f"| {r.predicted_speedup:.2f}x | {r.miou:.4f} | {100 * r.miou / dense_miou:.1f} % |")
    tuned = [r for r in rows if r.before_finetune is not None]
    lines += ["", "Fine-tuning the chosen config (test mIoU of the distilled supernet at that config → after "
              f"{args.finetune_steps} steps): " + "; ".join(
                  f"budget {r.budget}: {r.before_finetune:.4f} → {r.miou:.4f}" for r in tuned) + "."]
    lines += ["", f"![test mIoU vs measured latency]({plot_path().name})", ""]
    lines += targets(args, rows, dense_miou, dense_ms)
    return "\n".join(lines)


def targets(args, rows: list[Row], dense_miou: float, dense_ms: float) -> list[str]:
    final = [r for r in rows if r.recipe == RECIPES[-1]]
    out = []
    for speedup, share in ((1.4, 0.99), (1.9, 0.95)):
        hits = [r for r in final if dense_ms / r.measured_ms >= speedup]
        best = max(hits, key=lambda r: r.miou, default=None)
        out.append(f"- at ≥ {speedup}x measured: " + (
            f"best fine-tuned pick keeps {100 * best.miou / dense_miou:.1f} % (target {100 * share:.0f} %; "
            f"budget {best.budget}, {dense_ms / best.measured_ms:.2f}x)" if best else "no fine-tuned pick reached it"))
    for budget in args.budgets:
        f = next(r for r in final if r.budget == budget)
        u = next(r for r in rows if r.budget == budget and r.recipe == "uniform")
        out.append(f"- budget {budget}: fine-tuned pick − best uniform of no greater measured latency = "
                   f"{100 * (f.miou - u.miou):+.1f} points of mIoU (target ≥ +3)")
    return out


def dense_curve(curve) -> str:
    if not curve:
        return "trained with fixed steps"
    phases = {}
    for c in curve:
        phases[c.size] = c
    parts = [f"{c.step} steps at {size}px (val mIoU {c.val_miou:.3f})" for size, c in phases.items()]
    rule = ", each phase stopped by the plateau rule" if RECIPE.cycle_steps else ""
    return f"{' then '.join(parts)}{rule}, {curve[-1].wall_s / 60:.0f} min on one thread"


RECIPE = DemoRecipe()
FINETUNE_TEACHER = "frozen"  # what finetune(distill=True) uses


def main() -> None:
    global RECIPE, FINETUNE_TEACHER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.8, 0.7, 0.6, 0.5])
    parser.add_argument("--adapt-steps", type=int, default=600)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--finetune-teacher", choices=("frozen", "in-place"), default=FINETUNE_TEACHER)
    parser.add_argument("--terms", action="store_true", help="compare distillation terms instead")
    parser.add_argument("--step-cost", action="store_true", help="time a step of each recipe's training instead")
    parser.add_argument("--cost-steps", type=int, default=20)
    parser.add_argument("--cost-rounds", type=int, default=3)
    parser.add_argument("--diagnose", type=float, nargs="+", help="where this pick (ratios) loses accuracy")
    parser.add_argument("--term-steps", type=int, default=300)
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-score", choices=WINDOW_SCORES, default=DemoRecipe.window_score,
                        help="how stages rank windows")
    parser.add_argument("--task", choices=TASKS, default=DemoRecipe.task,
                        help="digits (mostly background) or textures (no window empty)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny recipe and settings")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        RECIPE = DemoRecipe.quick(seed=args.seed)
        args.adapt_steps, args.finetune_steps, args.term_steps, args.test_images = 4, 2, 2, 4
    if args.diagnose and args.task != "digits":
        parser.error("--diagnose counts digit and background pixels: it runs on --task digits only")
    RECIPE = dataclasses.replace(RECIPE, seed=args.seed, window_score=args.window_score, task=args.task)
    FINETUNE_TEACHER = args.finetune_teacher
    with num_threads(RECIPE.threads):
        text = (terms_table(args) if args.terms else step_cost(args) if args.step_cost
                else diagnose(args) if args.diagnose else run(args))
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
