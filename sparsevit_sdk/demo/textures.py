"""Built-in texture task: a scene where no window is empty, beside the mostly empty digit demo.

The digit canvases (:mod:`.demo`) are mostly background, the regime window skipping is for; a
window score that just drops background looks good there and nowhere else.  Here the image is cut
into Voronoi regions, each filled with one of :data:`NUM_TEXTURES` textures (a grating of one of
three orientations and two periods, with jittered angle and period, random phase and contrast, under
noise), and every pixel is labelled with its region's texture class: there is no background, so
every window carries labels, and dropping one costs its pixels.  Scored by mean IoU, like the digits.

Generation is a pure function of ``(seed, split, index)``, as the digits' is: deterministic,
order-independent, safe with shuffling and worker processes.  The splits draw from disjoint
streams of the seed.
"""

from __future__ import annotations

import numpy as np
import torch

from .digits import SPLITS, GeneratedImages, check_range, seeded_loader

ORIENTATIONS_DEG = (0.0, 60.0, 120.0)
PERIODS_PX = (6.0, 12.0)  # both above the patch size 4, so a patch sees each grating's phase change
NUM_TEXTURES = len(ORIENTATIONS_DEG) * len(PERIODS_PX)  # class c: orientation c // 2, period c % 2
JITTER = (10.0, 0.1)  # largest random change of a region's angle (degrees) and period (share)
# Texture pixels lie in [0, 1] around 0.5; the model sees them standardised with these constants.
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


class TextureScenes(GeneratedImages):
    """Images of ``H x W`` pixels (``size`` is an int or ``(H, W)``) cut into ``regions`` Voronoi regions
    (a random count in that range, seeds uniform over the image), each a texture class.

    Item ``i`` is ``(image, mask)``: image ``(channels, H, W)`` float32, standardised (the gray
    image repeated over the channels); mask ``(H, W)`` int64, the texture class of every pixel.
    """

    mean, std = PIXEL_MEAN, PIXEL_STD

    def __init__(
        self,
        split: str = "train",
        num_images: int = 1000,
        *,
        size: int | tuple[int, int] = 224,
        regions: tuple[int, int] = (4, 10),
        contrast: tuple[float, float] = (0.5, 1.0),
        noise: tuple[float, float] = (0.05, 0.15),
        channels: int = 3,
        seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if num_images < 1:
            raise ValueError(f"num_images must be positive, got {num_images}")
        self.regions = check_range("regions", regions)
        if self.regions[0] < 1:
            raise ValueError(f"regions must be at least 1, got {regions}")
        self.contrast = check_range("contrast", contrast)
        self.noise = check_range("noise", noise)
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.split, self.num_images, self.channels, self.seed = split, num_images, channels, seed

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw image ``(H, W)`` in [0, 1] and its mask ``(H, W)``."""
        rng = self.rng(index)
        H, W = self.size
        y, x = np.mgrid[0:H, 0:W].astype(np.float32)  # (H, W) each
        count = int(rng.integers(self.regions[0], self.regions[1] + 1))
        seeds = rng.uniform((0, 0), (H, W), size=(count, 2)).astype(np.float32)  # (count, 2): y, x
        region = np.argmin((y[None] - seeds[:, :1, None]) ** 2 + (x[None] - seeds[:, 1:, None]) ** 2, axis=0)  # (H, W)
        classes = rng.integers(NUM_TEXTURES, size=count)
        image = np.empty((H, W), dtype=np.float32)
        for r, c in enumerate(classes):
            angle = np.deg2rad(ORIENTATIONS_DEG[c // len(PERIODS_PX)] + rng.uniform(-JITTER[0], JITTER[0]))
            period = PERIODS_PX[c % len(PERIODS_PX)] * (1 + rng.uniform(-JITTER[1], JITTER[1]))
            inside = region == r
            phase = 2 * np.pi * (x[inside] * np.cos(angle) + y[inside] * np.sin(angle)) / period
            image[inside] = 0.5 + 0.5 * rng.uniform(*self.contrast) * np.sin(phase + rng.uniform(0, 2 * np.pi))
        image += rng.normal(0.0, rng.uniform(*self.noise), (H, W)).astype(np.float32)
        return np.clip(image, 0.0, 1.0), classes[region].astype(np.int64)


def texture_loader(
    split: str = "train", num_images: int = 1000, *, batch_size: int = 8, seed: int = 0, **scene_kwargs
) -> torch.utils.data.DataLoader:
    """Loader over :class:`TextureScenes` (see :func:`~.demo.seeded_loader`)."""
    return seeded_loader(TextureScenes(split, num_images, seed=seed, **scene_kwargs), split, batch_size, seed)
