"""What a model returns, read one way everywhere: a tensor, a tuple or list, a dict, or a Hugging
Face ``ModelOutput`` (a dict of its non-None fields, ``logits`` among them for a classifier)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.utils._pytree as pytree

PREDICTION_KEY = "logits"  # what a Hugging Face task model calls its prediction


def tensor_leaves(output: Any) -> tuple[torch.Tensor, ...]:
    """Every tensor in a forward's output, in order: a tensor, tuple, list, dict or ``ModelOutput``."""
    if isinstance(output, Mapping):  # a ModelOutput is a dict of what it holds
        output = list(output.values())
    return tuple(t for t in pytree.tree_leaves(output) if isinstance(t, torch.Tensor))


def prediction(output: Any) -> torch.Tensor:
    """The tensor a metric scores in a model's output: the output itself when it is a tensor,
    ``logits`` of a ``ModelOutput`` or dict that has them, else the first tensor of a tuple, list
    or dict (a ``(logits, aux)`` pair, torchvision's ``{"out": ...}``).

    Raises:
        TypeError: the output holds no tensor.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get(PREDICTION_KEY), torch.Tensor):
        return output[PREDICTION_KEY]
    leaves = tensor_leaves(output)
    if not leaves:
        raise TypeError(f"the model returned {type(output).__name__}, which holds no tensor to score; return logits "
                        "(a tensor, a tuple starting with them or an output with .logits), or pass a metric function "
                        "that reads this output")
    return leaves[0]
