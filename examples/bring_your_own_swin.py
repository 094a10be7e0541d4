"""Bring your own Swin: a timm classifier, a timm Swin V2 and a Hugging Face Mask2Former, made window-sparse.

    python examples/bring_your_own_swin.py

Both models get random weights here (no hub downloads); with yours, load the checkpoint first
(``pretrained=True``, ``from_pretrained(...)``) and convert afterwards.  For each model the
script checks that the converted model still gives the source's outputs at sparsity 0, runs
it at uniform 50 % window sparsity at an off-grid 1024x768 input, and then searches a
per-stage config for the Mask2Former against the shipped ``cpu`` predictor: latencies are the
whole model's (the backbone's prediction plus the rest of the model, measured here), so the
search says up front what the Mask2Former can gain end to end, and ``validate`` times both.
"""

from __future__ import annotations

import time

import timm
import torch

from sparsevit_sdk import SearchSession, search_space, set_sparsity, sparsify
from sparsevit_sdk.accuracy import AgreementProxy
from sparsevit_sdk.demo import probe_images

SIZE = (1024, 768)


def _timed(fn) -> tuple[object, float]:
    """``fn()`` and the wall time of a warm call (the first call pays for allocations and caches)."""
    with torch.inference_mode():
        fn()
        start = time.perf_counter()
        out = fn()
    return out, time.perf_counter() - start


def timm_classifier(x: torch.Tensor, name: str, **kwargs) -> None:
    source = timm.create_model(name, pretrained=False, **kwargs).eval()
    reference, dense_s = _timed(lambda: source(x))
    model = sparsify(source)  # a new module sharing source's weights; source is unchanged
    logits, _ = _timed(lambda: model(x))
    set_sparsity(model, search_space(model).uniform(0.5))
    _, sparse_s = _timed(lambda: model(x))
    print(f"timm {name} at {SIZE[0]}x{SIZE[1]}: max |logits - timm| at sparsity 0 = "
          f"{(logits - reference).abs().max():.1e}; timm {dense_s:.2f} s, ours at s=0.5 {sparse_s:.2f} s")


def mask2former(x: torch.Tensor) -> None:
    import transformers

    backbone = transformers.SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                       out_features=["stage1", "stage2", "stage3", "stage4"])
    model = transformers.Mask2FormerForUniversalSegmentation(
        transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=19)).eval()
    reference, dense_s = _timed(lambda: model(pixel_values=x).masks_queries_logits)
    sparsify(model, inplace=True)  # finds the SwinBackbone inside and swaps its stages
    masks, _ = _timed(lambda: model(pixel_values=x).masks_queries_logits)
    set_sparsity(model, search_space(model).uniform(0.5))
    _, sparse_s = _timed(lambda: model(pixel_values=x).masks_queries_logits)
    set_sparsity(model, search_space(model).dense())
    print(f"Mask2Former (Swin-T backbone) at {SIZE[0]}x{SIZE[1]}: max |masks - transformers| at sparsity 0 = "
          f"{(masks - reference).abs().max():.1e}; transformers {dense_s:.2f} s, ours at s=0.5 {sparse_s:.2f} s")
    # Search per-stage sparsity for the whole model at 1024x768: every latency is the backbone's prediction plus
    # the rest of the model (pixel decoder, transformer decoder), measured here at sparsity 0 beside the backbone.
    # Configs are scored by how closely the whole model's outputs (masks and classes) agree with dense ones, on two
    # smaller probe images.
    images, kind = probe_images((1, 3, 384, 288), num_images=2)
    proxy = AgreementProxy(model, images, name=f"agreement-cosine({kind}, 2x384x288)")
    search = dict(hw="cpu", input_shape=(1, 3, *SIZE), proxy=proxy, population=8, parents=4, generations=2)
    try:  # 70 % of the whole model's latency: Amdahl's law decides whether any config can get there
        session = SearchSession(model, latency_budget=0.7, **search)
    except ValueError as err:
        print(f"refused: {err}")
        session = SearchSession(model, latency_budget=0.7, budget_of="backbone", **search)
    result = session.run()
    print(result.summary())
    print(result.validate("cpu", repeats=1, warmup=1, rounds=1))  # the model as called and its backbone, timed
def main() -> None:
    torch.manual_seed(0)  # the random weights, so every run builds the same models
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    timm_classifier(x, "swin_tiny_patch4_window7_224", dynamic_img_size=True)
    # a Swin V2 fixes its windows at img_size: build it at the size it will run at (window 16 here)
    timm_classifier(x, "swinv2_tiny_window16_256", img_size=SIZE)
    mask2former(x)


if __name__ == "__main__":
    main()
