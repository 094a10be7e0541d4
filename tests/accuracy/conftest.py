"""Shared fixtures of the accuracy tests: a demo segmenter and tiny demo loaders."""

from __future__ import annotations

import pytest

from sparsevit_sdk import search_space
from sparsevit_sdk.demo import build_demo_model, demo_loader

SMALL = dict(size=64, cell=32, digit_px=(16, 24), digits_per_image=(1, 2))  # tiny canvases keep the suite fast


def small_loader(split: str = "train", num_images: int = 8, seed: int = 0):
    return demo_loader(split, num_images, batch_size=4, seed=seed, **SMALL)


@pytest.fixture(scope="module")
def seg():
    """A random-init demo segmenter in eval mode; tests that train must work on a copy."""
    return build_demo_model("swin_micro", seed=0)


@pytest.fixture(scope="module")
def space(seg):
    return search_space(seg)
