"""How exactly does a converted Swin V2 reproduce its source at sparsity 0?  Max abs difference of
every output, per library x window x input size.

Small random models (C=32, depths 2-2-2-2) whose weights are scaled so every layer moves the
outputs, and whose logit scales run from 20 to 200, past the clamp at 100 (where cosine
attention's logits are large enough that a wrong scale, clamp or mask shows).  The tests assert
the 1e-5 bound; this table shows how far below it each case is.

    python benchmarks/conversion_exactness.py [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
import torch.nn as nn
from _results import now_utc, write_section

from sparsevit_sdk import sparsify
from sparsevit_sdk.profiler import device_fingerprint

TINY = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))


def _randomize(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("logit_scale"):
                p.copy_(math.log(20) + math.log(10) * torch.rand(p.shape, generator=g))
            else:
                p.copy_(1 + 0.1 * noise if p.ndim == 1 and name.endswith("weight") else 0.1 * noise)
    return model.eval()


def _timm(window: int, img: int, pretrained: int = 0) -> Callable[[], tuple[nn.Module, Callable]]:
    def build():
        import timm

        return timm.create_model("swinv2_tiny_window8_256", pretrained=False, num_classes=5, window_size=window,
                                 img_size=img, strict_img_size=False,
                                 pretrained_window_sizes=(pretrained,) * 3 + (pretrained // 2,), **TINY), \
            lambda m, x: [m(x), m.forward_features(x)]
    return build


def _torchvision(window: int) -> Callable[[], tuple[nn.Module, Callable]]:
    def build():
        from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

        model = SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8],
                                window_size=[window] * 2, block=SwinTransformerBlockV2,
                                downsample_layer=PatchMergingV2, num_classes=5)
        return model, lambda m, x: [m(x), m.norm(m.features(x))]
    return build


def _hf(kind: str, window: int, img: int, pretrained: int = 0) -> Callable[[], tuple[nn.Module, Callable]]:
    def build():
        import transformers

        config = transformers.Swinv2Config(image_size=img, embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8],
                                           window_size=window, pretrained_window_sizes=[pretrained] * 4,
                                           out_features=["stage1", "stage2", "stage3", "stage4"])
        model = getattr(transformers, kind)(config)
        if kind == "Swinv2Backbone":
            return model, lambda m, x: list(m(pixel_values=x).feature_maps)
        return model, lambda m, x: [m(pixel_values=x).last_hidden_state, m(pixel_values=x).pooler_output]
    return build


CASES = [
    ("timm SwinTransformerV2, window 8", _timm(8, 256), [(256, 256), (224, 224), (288, 416)]),
    ("timm SwinTransformerV2, window 12", _timm(12, 192), [(192, 192), (384, 384)]),
    ("timm SwinTransformerV2, window 16 from pretrained 12", _timm(16, 256, 12), [(256, 256), (512, 512)]),
    ("torchvision swin_v2 (SwinTransformer V2 blocks), window 8", _torchvision(8), [(256, 256), (333, 517)]),
    ("torchvision swin_v2, window 16", _torchvision(16), [(256, 256), (512, 512)]),
    ("Hugging Face Swinv2Model, window 8", _hf("Swinv2Model", 8, 256), [(256, 256), (288, 352)]),
    ("Hugging Face Swinv2Backbone, window 16 from pretrained 12", _hf("Swinv2Backbone", 16, 256, 12),
     [(256, 256), (288, 352)]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args()
    lines = ["## Converted Swin V2: exactness", "",
             f"`python benchmarks/conversion_exactness.py` on {device_fingerprint(torch.device('cpu'))['name']} "
             f"(cpu, fp32, {now_utc()}): max abs difference between the source's outputs and `sparsify(source)`'s "
             "at sparsity 0, over every output (logits and final features; Hugging Face: last hidden state and "
             "pooler, or every backbone feature map), batch 2, random weights with logit scales 20-200.", "",
             "| source | input | max abs difference | largest output value |", "|---|---|---:|---:|"]
    print("\n".join(lines), flush=True)
    for name, build, sizes in CASES:
        try:
            source, outputs = build()
        except ImportError as err:
            print(f"skipped {name}: {err}")
            continue
        source = _randomize(source)
        model = sparsify(source)
        for h, w in sizes:
            x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
            with torch.inference_mode():
                pairs = list(zip(outputs(source, x), outputs(model, x)))
            diff = max(float((e - g).abs().max()) for e, g in pairs)
            scale = max(float(e.abs().max()) for e, _ in pairs)
            line = f"| {name} | {h}x{w} | {diff:.1e} | {scale:.1f} |"
            lines.append(line)
            print(line, flush=True)
    if args.results:
        write_section("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
