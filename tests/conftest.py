"""Shared fixtures: small models and inputs keep the suite fast on a 2-core CPU."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import SearchSpace, build_model

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="session")
def micro():
    """A seeded swin_micro in eval mode; tests must reset any sparsity they set."""
    return build_model("swin_micro")


@pytest.fixture()
def micro_space(micro):
    return SearchSpace.from_model(micro)


@pytest.fixture()
def image():
    return torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
