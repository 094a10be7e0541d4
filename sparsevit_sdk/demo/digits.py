"""Built-in demo task: a few handwritten digits on a large, mostly empty, noisy canvas.

Window sparsity only pays where most windows carry little: here most of a canvas is
background noise, so a Swin that skips low-norm windows can keep its accuracy.  The
task is dense prediction — every pixel is labelled background (0) or digit ``d`` (d + 1),
scored by mean IoU — and needs no download: the 8x8 digits come bundled with
scikit-learn.  Train, val and test canvases draw from disjoint sets of source digits.

Generation is a pure function of ``(seed, split, index)``, so a dataset is deterministic,
order-independent and safe to use with shuffling and worker processes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.ndimage import zoom
from sklearn.datasets import load_digits

from ..models import build_model
from ..sparse.swin import SparseSwin

logger = logging.getLogger(__name__)

NUM_CLASSES = 11  # background + digits 0-9
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
INK_THRESHOLD = 0.3  # upscaled intensity (0-1) above which a pixel belongs to its digit
# Canvas pixels lie in [0, 1]; the model sees them standardised with these constants.
PIXEL_MEAN, PIXEL_STD = 0.1, 0.2


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 bundled digits: images ``(n, 8, 8)`` in [0, 1], labels ``(n,)``."""
    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


def source_indices(split: str, *, split_seed: int = 0) -> np.ndarray:
    """Indices into the bundled digits that ``split`` may draw from; the splits are disjoint."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    n = len(_digits()[1])
    order = np.random.default_rng(split_seed).permutation(n)
    bounds = np.cumsum([0, *(int(round(f * n)) for f in SPLIT_FRACTIONS[:-1]), n])
    i = SPLITS.index(split)
    return np.sort(order[bounds[i] : bounds[i + 1]])


def check_range(name: str, value: Sequence[float]) -> tuple:
    """``value`` as ``(low, high)`` with ``0 < low <= high``: a range a built-in task draws from."""
    low, high = value
    if not 0 < low <= high:
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {tuple(value)}")
    return low, high


class GeneratedImages(torch.utils.data.Dataset):
    """A demo task's images, each made from its seed, split and index alone (deterministic, no files): ``generate``
    gives the raw ``(H, W)`` image in [0, 1] and its mask, normalised here by the task's ``mean`` and ``std``."""

    mean: float
    std: float
    split: str
    num_images: int
    channels: int
    seed: int

    def __len__(self) -> int:
        return self.num_images

    def rng(self, index: int) -> np.random.Generator:
        """The generator of image ``index`` (refused out of range)."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        return np.random.default_rng([self.seed, SPLITS.index(self.split), index])

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.generate(index)
        normalised = torch.from_numpy((image - self.mean) / self.std)
        return normalised.expand(self.channels, -1, -1).contiguous(), torch.from_numpy(mask)


class DigitCanvases(GeneratedImages):
    """Canvases of ``H x W`` pixels (``size`` is an int or ``(H, W)``) with ``digits_per_image``
    digits of ``digit_px`` pixels each.

    The canvas is divided into square cells of ``cell`` pixels; each digit takes its own
    random cell, centred with up to ``jitter`` pixels of random offset.  Loose placement
    on a grid keeps digits apart and is what lets a small Swin trained from scratch learn
    digit identity within CPU minutes: with free placement it needs far more data to
    become translation invariant (measured: no progress in 1,600 samples, while cell
    placement learns).  Item ``i`` is ``(image, mask)``: image ``(channels, H, W)``
    float32, standardised; mask ``(H, W)`` int64, 0 for background and ``d + 1`` for digit ``d``.
    """

    mean, std = PIXEL_MEAN, PIXEL_STD

    def __init__(
        self,
        split: str = "train",
        num_images: int = 1000,
        *,
        size: int | tuple[int, int] = 224,
        cell: int = 56,
        digits_per_image: tuple[int, int] = (1, 4),
        digit_px: tuple[int, int] = (32, 48),
        jitter: int = 4,
        noise: tuple[float, float] = (0.03, 0.1),
        channels: int = 3,
        seed: int = 0,
        split_seed: int = 0,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be positive, got {num_images}")
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.cells = (self.size[0] // cell, self.size[1] // cell)
        self.digits_per_image = check_range("digits_per_image", digits_per_image)
        self.digit_px = check_range("digit_px", digit_px)
        self.noise = check_range("noise", noise)
        if digit_px[1] > cell or digits_per_image[1] > self.cells[0] * self.cells[1]:
            raise ValueError(
                f"{digits_per_image[1]} digits of up to {digit_px[1]} px do not fit {self.cells[0]}x{self.cells[1]} "
                f"cells of {cell} px on a {self.size} canvas; lower digit_px or digits_per_image, or raise size"
            )
        self.split = split
        self.num_images = num_images
        self.cell = cell
        self.jitter = jitter
        self.channels = channels
        self.seed = seed
        self.sources = source_indices(split, split_seed=split_seed)

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw canvas ``(H, W)`` in [0, 1] and its mask ``(H, W)``."""
        rng = self.rng(index)
        images, labels = _digits()
        H, W = self.size
        canvas = rng.uniform(0.0, 0.15) + rng.normal(0.0, rng.uniform(*self.noise), (H, W))
        mask = np.zeros((H, W), dtype=np.int64)
        count = rng.integers(self.digits_per_image[0], self.digits_per_image[1] + 1)
        for cell in rng.choice(self.cells[0] * self.cells[1], size=count, replace=False):
            src = rng.choice(self.sources)
            px = int(rng.integers(self.digit_px[0], self.digit_px[1] + 1))
            room = min(self.jitter, (self.cell - px) // 2)
            y, x = (np.array(divmod(cell, self.cells[1])) * self.cell + (self.cell - px) // 2
                    + rng.integers(-room, room + 1, size=2))
            glyph = np.clip(zoom(images[src], px / 8, order=1), 0.0, 1.0)[:px, :px]  # (px, px)
            canvas[y : y + px, x : x + px] += rng.uniform(0.6, 1.0) * glyph
            mask[y : y + px, x : x + px][glyph > INK_THRESHOLD] = labels[src] + 1
        return np.clip(canvas, 0.0, 1.0).astype(np.float32), mask



def seeded_loader(data: torch.utils.data.Dataset, split: str, batch_size: int,
                  seed: int) -> torch.utils.data.DataLoader:
    """A loader over a demo task's ``data``; the train split is shuffled with its own seeded generator."""
    shuffle = split == "train"
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


def demo_loader(
    split: str = "train", num_images: int = 1000, *, batch_size: int = 8, seed: int = 0, **canvas_kwargs
) -> torch.utils.data.DataLoader:
    """Loader over :class:`DigitCanvases` (see :func:`seeded_loader`)."""
    return seeded_loader(DigitCanvases(split, num_images, seed=seed, **canvas_kwargs), split, batch_size, seed)


class DemoSegmenter(nn.Module):
    """A :class:`SparseSwin` backbone with a light FPN-style head: ``(B, C, H, W)`` → ``(B, K, H, W)``.

    Every stage map is projected to ``head_dim`` channels by a 1x1 conv, upsampled to the
    stride-``patch`` grid and summed; a norm, GELU and 1x1 conv classify each position,
    and the logits are upsampled bilinearly to the input size.  ``set_sparsity(model, cfg)`` and
    ``search_space(model)`` find its backbone like any model's; it also shows the backbone's
    ``signature``, ``depths`` and ``block_sparsity``, which proxies read.
    """

    def __init__(self, backbone: SparseSwin, num_classes: int = NUM_CLASSES, head_dim: int = 32) -> None:
        super().__init__()
        self.backbone = backbone
        self.lateral = nn.ModuleList(nn.Conv2d(dim, head_dim, kernel_size=1) for dim in backbone.dims)
        self.norm = nn.GroupNorm(1, head_dim)
        self.classify = nn.Conv2d(head_dim, num_classes, kernel_size=1)

    @property
    def signature(self) -> str:
        return self.backbone.signature

    @property
    def depths(self) -> tuple[int, ...]:
        return self.backbone.depths

    @property
    def block_sparsity(self) -> list[list[float]]:
        return self.backbone.block_sparsity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(x)  # [(B, C_i, H/p/2^i, W/p/2^i)]
        size = maps[0].shape[-2:]
        fused = sum(
            F.interpolate(lat(m), size=size, mode="bilinear", align_corners=False) if i else lat(m)
            for i, (lat, m) in enumerate(zip(self.lateral, maps))
        )  # (B, head_dim, H/p, W/p)
        logits = self.classify(F.gelu(self.norm(fused)))  # (B, K, H/p, W/p)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_demo_model(
    backbone: str = "swin_micro", *, num_classes: int = NUM_CLASSES, head_dim: int = 32, seed: int = 0
) -> DemoSegmenter:
    """A registered backbone plus the demo head, randomly initialised under ``seed``, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DemoSegmenter(build_model(backbone, seed=None), num_classes, head_dim)
    return model.eval()


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy: logits ``(B, K, H, W)``, mask ``(B, H, W)`` int64."""
    return F.cross_entropy(logits, mask)
