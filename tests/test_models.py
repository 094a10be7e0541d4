"""models.py: the registry of built-in architectures."""

from __future__ import annotations

import pytest

from sparsevit_sdk import build_model


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match="swin_micro"):
        build_model("resnet50")
