"""Whole models that call their backbone more than once, or at another shape than their input:
the dense whole-model prediction as it was (every call counted at the input shape) and as it is
(each call priced at its own shape, the rest measured beside those calls), against the model timed.

    python benchmarks/whole_calls.py                # swin_micro's demo segmenter at 224x224 (~3 min, 2-core CPU)
    python benchmarks/whole_calls.py --size 448

A predictor calibrated here (``for_device``: one thread, thread CPU clock; cached) prices the
backbone.  "measured" is the dense model as it is called, the lowest CPU-clock time of five
rounds.  "before" is the accounting until issue 31: ``calls`` x the prediction at the input shape
plus the paired median of (whole - ``calls`` backbones at the input shape), never below 0; a
forward whose backbone batch differs from the input's was refused.
"""

from __future__ import annotations

import argparse
import functools
import platform

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsevit_sdk import build_model, for_device, search_space
from sparsevit_sdk.demo import build_demo_model
from sparsevit_sdk.profiler import ModelForward, backbone_calls, format_shapes, num_threads, time_callable
from sparsevit_sdk.search import predict_calls, rest_of_model


class MultiScale(nn.Module):
    """The segmenter at full and half size, its logits averaged at full size."""

    def __init__(self, seg: nn.Module) -> None:
        super().__init__()
        self.seg = seg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.seg(F.interpolate(x, scale_factor=0.5, mode="bilinear"))
        return (self.seg(x) + F.interpolate(half, size=x.shape[-2:], mode="bilinear")) / 2


class FlipTTA(nn.Module):
    """The segmenter on the image and its mirror in one doubled batch, the two averaged."""

    def __init__(self, seg: nn.Module) -> None:
        super().__init__()
        self.seg = seg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.seg(torch.cat([x, x.flip(-1)]))
        return (y[: len(x)] + y[len(x):].flip(-1)) / 2


def cpu_ms(fn, repeats: int = 10) -> float:
    return time_callable(fn, warmup=0, repeats=repeats, clock="cpu").min_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="input side (default 224)")
    args = parser.parse_args()
    shape = (1, 3, args.size, args.size)
    x = torch.randn(shape)
    with num_threads(1), torch.no_grad():
        local = for_device(build_model("swin_micro"), shape, "cpu", progress=False)
        print(f"{platform.processor() or platform.machine()}, 1 thread, CPU clock; input {format_shapes([shape])}\n")
        print("| model | backbone calls | measured ms | before ms (error) | now ms (error) |")
        print("|---|---|---|---|---|")
        for name, wrap in (("multi-scale 1x + 0.5x", MultiScale), ("flip TTA, batch doubled", FlipTTA)):
            model = wrap(build_demo_model("swin_micro")).eval()
            forward, backbone = ModelForward(model), model.seg.backbone
            space = search_space(backbone)
            dense = space.dense()
            rest = rest_of_model(forward, local, space, shape)
            now = rest.end_to_end(float(predict_calls(local, backbone, rest, shape, [dense])[0]))
            whole = functools.partial(forward, x)
            cpu_ms(whole, repeats=2)  # warm
            measured = min(cpu_ms(whole) for _ in range(5))
            if all(s[0] == shape[0] for s in rest.shapes):  # the old probe saw the input's batch
                at_input = backbone_calls(backbone, [shape] * rest.calls, x)
                diffs = [cpu_ms(whole, 1) - cpu_ms(at_input, 1) for _ in range(25)]
                before = (rest.calls * local.predict_config(backbone, shape, dense)
                          + max(0.0, float(np.median(diffs))))
                old = f"{before:.2f} ({before / measured - 1:+.0%})"
            else:
                old = "refused (\"resizes its input\")"
            print(f"| {name} | {format_shapes(rest.shapes)} | {measured:.2f} | {old} | "
                  f"{now:.2f} ({now / measured - 1:+.0%}) |")


if __name__ == "__main__":
    main()
