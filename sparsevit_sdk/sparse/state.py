"""Temporary model state: apply a sparsity and a train/eval mode, restore both afterwards.

Adaptation, every proxy evaluation, an export and a validation change the model's sparsity;
the caller's model must come back exactly as it was, or a search would silently score the
wrong config.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn as nn

from ..config import SparsityConfig
from .convert import sparse_backbone
from .swin import SparseSwin


def restore_sparsity(backbone: SparseSwin, saved: list[list[float]]) -> None:
    """Put back per-block sparsity read earlier from ``backbone.block_sparsity``."""
    for stage, values in zip(backbone.stages, saved):
        stage.sparsity = values


@contextmanager
def preserved(model: nn.Module, *, training: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train or eval mode; on exit restore its mode and per-block sparsity."""
    backbone = sparse_backbone(model)
    saved_sparsity, saved_mode = backbone.block_sparsity, model.training
    model.train(training)
    try:
        yield model
    finally:
        restore_sparsity(backbone, saved_sparsity)
        model.train(saved_mode)


def check_config(model: nn.Module, config: SparsityConfig) -> None:
    """Refuse a config made for another architecture before anything runs."""
    if not isinstance(config, SparsityConfig):
        raise TypeError(f"expected a SparsityConfig, got {type(config).__name__}")
    config.check_model(sparse_backbone(model).signature)
