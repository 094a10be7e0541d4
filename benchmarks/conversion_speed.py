"""Converted Swin-T and Swin V2-T from every supported library: its own dense forward vs
``sparsify(model)`` at sparsity 0 and at uniform 0.5, side by side at a high, off-grid resolution.

The conversion should cost nothing dense (ours at 0 / source close to 1) and keep the speed-up
of skipping windows.  Every model runs through its library's own call, interleaved round by
round so machine drift hits each alike; one thread, the thread's CPU clock on the CPU.

    python benchmarks/conversion_speed.py [--resolution 1024x768] [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn as nn
from _results import now_utc, write_section

from sparsevit_sdk import search_space, set_sparsity, sparsify
from sparsevit_sdk.devices import resolve_device
from sparsevit_sdk.profiler import device_fingerprint, parse_resolution, time_callable

Build = Callable[[tuple[int, int]], tuple[nn.Module, Callable]]  # input (H, W) → model, its library's call


def _timm(name: str, **kwargs) -> Build:
    def build(size: tuple[int, int]) -> tuple[nn.Module, Callable]:
        import timm

        # a V2 fixes its windows at img_size: build it at the benchmark's size, as one deployed there would be
        sized = {"img_size": size} if "v2" in name else {}
        return timm.create_model(name, pretrained=False, **kwargs, **sized), lambda m, x: m(x)
    return build


def _torchvision(name: str) -> Build:
    def build(size: tuple[int, int]) -> tuple[nn.Module, Callable]:
        import torchvision

        return getattr(torchvision.models, name)(), lambda m, x: m(x)
    return build


def _hf(kind: str) -> Build:
    def build(size: tuple[int, int]) -> tuple[nn.Module, Callable]:
        import transformers

        v2 = kind.startswith("Swinv2")
        config = (transformers.Swinv2Config if v2 else transformers.SwinConfig)(
            embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=8 if v2 else 7,
            image_size=list(size), out_features=["stage1", "stage2", "stage3", "stage4"])
        return getattr(transformers, kind)(config), lambda m, x: m(pixel_values=x)
    return build


SOURCES: dict[str, Build] = {
    "timm swin_tiny_patch4_window7_224 (dynamic_img_size)": _timm("swin_tiny_patch4_window7_224",
                                                                  dynamic_img_size=True),
    "torchvision swin_t": _torchvision("swin_t"),
    "Hugging Face SwinModel (Swin-T)": _hf("SwinModel"),
    "Hugging Face SwinBackbone (Swin-T)": _hf("SwinBackbone"),
    "timm swinv2_tiny_window16_256 (img_size = input)": _timm("swinv2_tiny_window16_256"),
    "torchvision swin_v2_t": _torchvision("swin_v2_t"),
    "Hugging Face Swinv2Model (Swin V2-T, window 8)": _hf("Swinv2Model"),
}


def bench(name: str, build: Build, shape: tuple[int, ...], device: torch.device, rounds: int, repeats: int,
          clock: str) -> dict:
    torch.manual_seed(0)
    source, call = build(shape[2:])
    source.to(device).eval()
    ours = sparsify(source)
    space = search_space(ours)
    x = torch.randn(*shape, device=device)
    half = space.uniform(0.5)
    variants = {"source": (source, None), "ours s=0": (ours, space.dense()), "ours s=0.5": (ours, half)}
    runs: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for key, (model, cfg) in variants.items():
            if cfg is not None:
                set_sparsity(model, cfg)
            stats = time_callable(lambda model=model: call(model, x), device, warmup=1, repeats=repeats, clock=clock)
            runs[key].append(stats.p10_ms if device.type == "cpu" else stats.median_ms)
    best = {k: min(v) for k, v in runs.items()}
    return dict(name=name, source=best["source"], dense=best["ours s=0"], half=best["ours s=0.5"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", default="1024x768", help="HxW; off the 224 grid by default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--results", default=None, help="write the table into this RESULTS.md (default: print)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    h, w = parse_resolution(args.resolution)
    shape = (1, 3, h, w)
    clock = "cpu" if device.type == "cpu" else "wall"
    threads = 1 if device.type == "cpu" else torch.get_num_threads()
    torch.set_num_threads(threads)
    statistic = "p10" if device.type == "cpu" else "median"
    lines = [
        "## Converted models",
        "",
        f"`python benchmarks/conversion_speed.py --resolution {h}x{w}` on {device_fingerprint(device)['name']} "
        f"({device}, {threads} thread(s), {clock} clock, {now_utc()}; best {statistic} of {args.rounds} interleaved "
        f"rounds x {args.repeats} calls). Each model is called as its library calls it; random weights.",
        "",
        "| source | source dense ms | ours s=0 ms | ours / source | ours s=0.5 ms | speed-up vs source |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name, build in SOURCES.items():
        try:
            r = bench(name, build, shape, device, args.rounds, args.repeats, clock)
        except ImportError as err:
            print(f"skipped {name}: {err}")
            continue
        line = (f"| {r['name']} | {r['source']:.0f} | {r['dense']:.0f} | {r['dense'] / r['source']:.2f} | "
                f"{r['half']:.0f} | {r['source'] / r['half']:.2f}x |")
        lines.append(line)
        print(line, flush=True)
    if args.results:
        write_section("\n".join(lines))


if __name__ == "__main__":
    main()
