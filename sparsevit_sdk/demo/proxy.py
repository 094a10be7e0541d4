"""The search's fallback proxy: label-free agreement of a sparse model with its dense self on the demo's
images, for a user who has no labelled data at hand (or has not passed any)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn as nn

from ..accuracy.proxy import AgreementProxy, Measure
from .digits import DigitCanvases

logger = logging.getLogger(__name__)


def probe_images(
    input_shape: Sequence[int], *, num_images: int = 8, seed: int = 0
) -> tuple[torch.Tensor, str]:
    """``num_images`` images of ``input_shape``'s ``(C, H, W)`` for a label-free proxy, and their kind.

    Demo-task canvases (val split; one digit per cell of a 4x4 grid, scaled to the canvas, the gray
    image repeated over the channels) where the canvas is at least 64 px a side; otherwise (or for unusual sizes)
    seeded Gaussian noise, which still exercises every window but says less about accuracy.
    """
    if len(input_shape) not in (3, 4):
        raise ValueError(f"input_shape must be (C, H, W) or (B, C, H, W), got {tuple(input_shape)}")
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    C, H, W = (int(v) for v in input_shape[-3:])
    if min(H, W) >= 64:
        side = min(H, W)
        canvases = DigitCanvases("val", num_images, size=(H, W), cell=side // 4, digit_px=(side // 8, side // 4),
                                 channels=C, seed=seed)
        return torch.stack([canvases[i][0] for i in range(num_images)]), "demo"
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_images, C, H, W, generator=generator), "synthetic"


def default_proxy(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    num_images: int = 8,
    measure: Measure = "cosine",
    seed: int = 0,
    progress: bool = False,
) -> AgreementProxy:
    """The search's fallback proxy: :class:`AgreementProxy` on :func:`probe_images`.

    Its name records which images it uses, e.g. ``"agreement-cosine(demo, 8x224x224)"``, so a
    checkpointed search refuses to resume with a proxy on other images.
    """
    images, kind = probe_images(input_shape, num_images=num_images, seed=seed)
    logger.info("default proxy: label-free %s agreement on %d %s images of %s", measure, num_images, kind,
                tuple(images.shape[1:]))
    name = f"agreement-{measure}({kind}, {num_images}x{images.shape[-2]}x{images.shape[-1]})"
    return AgreementProxy(model, images, measure=measure, name=name, progress=progress)
