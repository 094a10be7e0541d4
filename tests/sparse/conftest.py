"""Shared fixtures of the kernel tests."""

from __future__ import annotations

import pytest

from sparsevit_sdk import build_model


@pytest.fixture(params=["swin_micro", "swinv2_micro"])
def micro(request):
    """Every kernel property below holds for both block kinds (this overrides conftest's V1-only fixture)."""
    return build_model(request.param)
