"""Measured speed-up of window-sparse Swin kernels vs the ideal (windows / kept windows, i.e. 1 / (1 - s)
up to rounding to whole windows), for Swin V1 and V2.

Two models at a resolution each is used at: Swin-T at 672x672 (window 7; token maps 168, 84,
42, 21) and Swin V2-T with window 16 at 768x768 (maps 192, 96, 48, 24).  For every stage shape
one block pair runs dense and at sparsity 0.2/0.4/0.6/0.8, interleaved round by round so
machine drift hits every setting alike.  Where the measured speed-up falls short, the table
shows where the time goes: window scoring + top-k (once per stage), and the gather / scatter
of the kept rows.  Then each whole backbone dense vs uniform 0.5, and our dense path vs the
library's own dense forward on the same weights (torchvision swin_t, timm swinv2_tiny_window16_256),
all in one run.

    python benchmarks/kernel_speedup.py [--device cpu] [--threads N] [--rounds 5] [--only v1|v2]

The whole-backbone comparison can also run at several batches, dtypes and runtimes (a GPU's
matrix; ``benchmarks/gpu_check.sh`` uses it), its rows saved as JSON as each case finishes:

    python benchmarks/kernel_speedup.py --device cuda:0 --only v1 --batch 1 4 --dtype fp16 fp32 \
        --runtime eager compiled --whole-only --json whole.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from sparsevit_sdk import build_model, measure_latency, search_space, set_sparsity, sparsify
from sparsevit_sdk.arch import kept_windows, num_windows
from sparsevit_sdk.devices import TORCH_DTYPES, resolve_device
from sparsevit_sdk.profiler import LatencyStats, device_fingerprint, num_threads, time_callable
from sparsevit_sdk.sparse import SparseSwinStage, pad_to_windows

SPARSITIES = (0.0, 0.2, 0.4, 0.6, 0.8)


def _torchvision_swin_t() -> tuple[str, Callable[[int], nn.Module], Callable]:
    import torchvision

    return ("torchvision swin_t features + norm", lambda size: torchvision.models.swin_t(),
            lambda ref, x: ref.norm(ref.features(x)))


def _timm_swinv2_t_window16() -> tuple[str, Callable[[int], nn.Module], Callable]:
    import timm

    return ("timm swinv2_tiny_window16_256 forward_features",
            lambda size: timm.create_model("swinv2_tiny_window16_256", pretrained=False, img_size=size),
            lambda ref, x: ref.forward_features(x))


@dataclass(frozen=True)
class Variant:
    """One model at one resolution, and the library forward its dense path is compared with."""

    key: str
    title: str
    model: str
    resolution: int
    reference: Callable[[], tuple[str, Callable[[int], nn.Module], Callable]]


VARIANTS = (
    Variant("v1", "Swin-T", "swin_t", 672, _torchvision_swin_t),
    Variant("v2", "Swin V2-T, window 16", "swinv2_t_window16", 768, _timm_swinv2_t_window16),
)


def _best(stats: list[LatencyStats]) -> float:
    """Fastest p10 over rounds: the statistic that survives a noisy shared machine."""
    return min(s.p10_ms for s in stats)


def bench_stage(tokens: int, dim: int, heads: int, window: int, block: str, device: torch.device, rounds: int,
                repeats: int) -> list[dict]:
    torch.manual_seed(0)
    stage = SparseSwinStage(dim, dim, depth=2, num_heads=heads, window_size=window, downsample=False, kind=block)
    stage.to(device).eval()
    x = pad_to_windows(torch.randn(1, tokens, tokens, dim, device=device), window)  # as the stage pads it
    layout = stage.layout(tokens, tokens, device)
    picks, runs = {}, {s: [] for s in SPARSITIES}
    with torch.inference_mode():
        for s in SPARSITIES:
            stage.sparsity = [s, s]
            picks[s] = stage.select(x, layout)
        for _ in range(rounds):
            for s in SPARSITIES:
                def pair(s=s):
                    for i, windows in enumerate(picks[s]):
                        stage.run_block(i, x, windows, layout)
                runs[s].append(time_callable(pair, device, warmup=1, repeats=repeats))
        stage.sparsity = [0.5, 0.5]
        score = time_callable(lambda: stage.select(x, layout), device, warmup=1, repeats=repeats * rounds)
        rows = layout.rows(picks[0.4][0], False, 1)
        flat = x.view(-1, dim)
        kept = flat.index_select(0, rows)
        gather = time_callable(lambda: flat.index_select(0, rows), device, warmup=1, repeats=repeats * rounds)
        scatter = time_callable(lambda: flat.index_copy_(0, rows, kept), device, warmup=1,
                                repeats=repeats * rounds)
    dense = _best(runs[0.0])
    out = []
    for s in SPARSITIES[1:]:
        speedup = dense / _best(runs[s])
        ideal = layout.num_windows / kept_windows(layout.num_windows, s)  # 1 / (1 - s) up to rounding
        out.append(dict(tokens=tokens, dim=dim, nW=layout.num_windows, s=s, dense_ms=dense,
                        sparse_ms=_best(runs[s]), speedup=speedup, ideal=ideal, ratio=speedup / ideal,
                        score_pct=100 * score.p10_ms / dense,
                        gather_scatter_pct=100 * 2 * (gather.p10_ms + scatter.p10_ms) * (1 - s) / 0.6 / dense))
    return out


def _reference_ms(variant: Variant, shape: tuple[int, ...], device: torch.device,
                  rounds: int) -> tuple[str, float, float]:
    """The source library's dense forward of the same architecture, and our dense path on the very
    same weights (``sparsify`` of it at sparsity 0), interleaved: so speed-ups are not measured
    against a slow dense path of our own.  Same weights matter: random weights of another
    initialisation ran Swin V2-T 15 % slower in either implementation (their attention's
    exponentials underflow differently)."""
    name, build, forward = variant.reference()
    ref = build(shape[-1]).to(device).eval()
    ours = sparsify(ref)
    x = torch.randn(*shape, device=device)
    runs: dict[str, list[LatencyStats]] = {"reference": [], "ours": []}
    with torch.inference_mode():
        for _ in range(rounds):
            for key, model in (("reference", ref), ("ours", ours)):
                runs[key].append(time_callable(lambda model=model: forward(model, x), device, warmup=1, repeats=3))
    return name, _best(runs["reference"]), _best(runs["ours"])


def whole_backbone(name: str, model: nn.Module, res: int, device: torch.device, rounds: int, batch: int,
                   dtype: str, runtime: str) -> dict:
    """Dense vs uniform s=0.5, interleaved round by round; a failure (e.g. a compile error) is
    returned as the row's ``error`` so the other cases still run.

    Compiled: one ``torch.compile`` of the model, compiled in the first timed round's warm-up
    (under inference mode, as timed: measure_latency's compile under no_grad would compile each
    config twice); Dynamo's cache serves later rounds.  The row counts the graphs Dynamo made and
    its graph breaks: more graphs than the two configs means recompiles."""
    from torch._dynamo.utils import counters

    space = search_space(model)
    shape = (batch, 3, res, res)
    row = dict(model=name, resolution=res, batch=batch, dtype=dtype, runtime=runtime, device=str(device),
               sparsity=0.5, torch=torch.__version__)
    dense, half = [], []
    try:
        if runtime == "compiled":
            torch._dynamo.reset()  # each case compiles afresh: no recompile limit, no shapes made dynamic before
            counters.clear()
            x = torch.randn(shape, device=device, dtype=TORCH_DTYPES[dtype])
            model.to(device=device, dtype=TORCH_DTYPES[dtype]).eval()
            with torch.inference_mode():  # fill the stages' layout caches first: compiling while they filled
                for cfg in (space.dense(), space.uniform(0.5)):  # recompiled every stage (seen on the CPU)
                    set_sparsity(model, cfg)
                    model(x)
            compiled = torch.compile(model)
        for _ in range(max(2, rounds // 2)):
            for cfg, runs in ((space.dense(), dense), (space.uniform(0.5), half)):
                set_sparsity(model, cfg)
                if runtime == "compiled":
                    runs.append(time_callable(lambda: compiled(x), device, warmup=1, repeats=3))
                else:
                    runs.append(measure_latency(model, shape, device, warmup=1, repeats=3, dtype=TORCH_DTYPES[dtype]))
    except Exception as err:  # reported, not raised: one case must not end the matrix
        return {**row, "error": f"{type(err).__name__}: {err}"[:500]}
    if runtime == "compiled":
        row.update(graphs=counters["stats"]["unique_graphs"], graph_breaks=sum(counters["graph_break"].values()))
    d, h = _best(dense), _best(half)
    return {**row, "dense_p10_ms": d, "sparse_p10_ms": h, "speedup": d / h,
            "dense_median_ms": min(x.median_ms for x in dense), "sparse_median_ms": min(x.median_ms for x in half)}


def run_variant(variant: Variant, device: torch.device, rounds: int, repeats: int, resolution: int | None = None,
                batches: tuple[int, ...] = (1,), dtypes: tuple[str, ...] = ("fp32",),
                runtimes: tuple[str, ...] = ("eager",), whole_only: bool = False,
                rows: list[dict] | None = None, json_path: str | None = None, model_name: str | None = None) -> None:
    model_name = model_name or variant.model
    model = build_model(model_name)
    arch = model.architecture
    res = resolution or variant.resolution
    title = variant.title if model_name == variant.model else model_name
    print(f"\n## {title} ({arch.signature}) at {res}x{res}\n")
    if not whole_only:
        print(f"Block pair (W-MSA + SW-MSA), {variant.title} stage shapes at {res}x{res}, best p10 over rounds")
        print("| stage tokens | dim | windows | s | dense ms | sparse ms | speed-up | ideal | measured/ideal "
              "| scoring % of dense pair | gather+scatter % of dense pair |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for (tokens, _), dim, heads, window in zip(arch.stage_tokens(res, res), arch.dims, arch.num_heads,
                                                   arch.window_size):
            if num_windows(tokens, tokens, window) == 1:
                print(f"| {tokens} | {dim} | 1 | - | one window: nothing to skip | | | | | | |")
                continue
            for r in bench_stage(tokens, dim, heads, window, arch.block, device, rounds, repeats):
                print(f"| {r['tokens']} | {r['dim']} | {r['nW']} | {r['s']:.1f} | {r['dense_ms']:.2f} | "
                      f"{r['sparse_ms']:.2f} | {r['speedup']:.2f}x | {r['ideal']:.2f}x | {r['ratio']:.2f} | "
                      f"{r['score_pct']:.1f} | {r['gather_scatter_pct']:.1f} |")

    rows = [] if rows is None else rows
    for runtime in runtimes:  # eager first: a slow compile cannot cost the eager rows
        for dtype in dtypes:
            for batch in batches:
                r = whole_backbone(model_name, model, res, device, rounds, batch, dtype, runtime)
                rows.append(r)
                if json_path:  # rewritten after every case: a run stopped by a timeout keeps what it measured
                    with open(json_path, "w") as f:
                        json.dump(rows, f, indent=1)
                case = "" if (dtype, runtime) == ("fp32", "eager") else f", {dtype}, {runtime}"
                head = f"\nWhole {title} backbone at {res}x{res}, batch {batch}{case}:"
                if "error" in r:
                    print(f"{head} failed: {r['error']}")
                    continue
                graphs = f"; {r['graphs']} graphs, {r['graph_breaks']} graph breaks" if "graphs" in r else ""
                print(f"{head} dense {r['dense_p10_ms']:.1f} ms, uniform s=0.5 {r['sparse_p10_ms']:.1f} ms, "
                      f"speed-up {r['speedup']:.2f}x (ideal for the blocks alone 2.00x; median "
                      f"{r['dense_median_ms']:.1f} / {r['sparse_median_ms']:.1f} ms{graphs})")
    if whole_only:
        return
    shape = (1, 3, res, res)
    try:
        name, reference, ours = _reference_ms(variant, shape, device, max(2, rounds // 2))
    except ImportError as err:
        print(f"Dense reference skipped: {err}")
        return
    print(f"Dense reference, {name}: {reference:.1f} ms; our dense path on its weights (sparsify, s=0) "
          f"{ours:.1f} ms (ours / reference = {ours / reference:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=[v.key for v in VARIANTS], help="run one model (default: all)")
    parser.add_argument("--resolution", type=int, help="input size instead of each model's own (224: a smoke test)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="whole-backbone batch sizes (default: 1)")
    parser.add_argument("--dtype", nargs="+", choices=list(TORCH_DTYPES), default=["fp32"],
                        help="whole-backbone dtypes (default: fp32)")
    parser.add_argument("--runtime", nargs="+", choices=["eager", "compiled"], default=["eager"],
                        help="whole-backbone runtimes; compiled is torch.compile (default: eager)")
    parser.add_argument("--whole-only", action="store_true", help="only the whole-backbone rows (no block pairs, "
                        "no dense reference)")
    parser.add_argument("--json", metavar="PATH", help="write the whole-backbone rows here, after every case")
    parser.add_argument("--model", help="built-in model instead of the variant's (with --whole-only; swin_micro: a "
                        "smoke test)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = device_fingerprint(device)["name"]
    with num_threads(args.threads):
        print(f"device: {device} ({name}), threads: {torch.get_num_threads()}, torch {torch.__version__}")
        rows: list[dict] = []
        for variant in VARIANTS:
            if args.only in (None, variant.key):
                run_variant(variant, device, args.rounds, args.repeats, args.resolution, tuple(args.batch),
                            tuple(args.dtype), tuple(args.runtime), args.whole_only, rows, args.json, args.model)
    if any("error" in r for r in rows):
        raise SystemExit(f"{sum('error' in r for r in rows)} whole-backbone case(s) failed")


if __name__ == "__main__":
    main()
