"""What a model returns, read one way everywhere: a tensor, a tuple or list, a dict, or a Hugging
Face ``ModelOutput`` (a dict of its non-None fields, ``logits`` among them for a classifier)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

PREDICTION_KEY = "logits"  # what a Hugging Face task model calls its prediction
OUTPUT_NAME = "output"  # a tensor's name where its model gives none


def _named(output: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(output, torch.Tensor):
        yield name, output
    elif isinstance(output, Mapping):  # a ModelOutput is a dict of its non-None fields
        for key, value in output.items():
            yield from _named(value, f"{name}_{key}" if name != OUTPUT_NAME else str(key))
    elif isinstance(output, tuple | list):
        for i, value in enumerate(output):
            yield from _named(value, f"{name}_{i}")


def named_tensors(output: Any) -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a forward's output, in the order ``torch.export`` flattens it, with the name
    the output gives it: ``logits`` of a ``ModelOutput``, ``feature_maps_0`` … of a tuple inside it,
    ``output`` for a bare tensor, ``output_0`` … for a tuple's (a tensor, tuple, list, dict or
    ``ModelOutput``; anything else holds none)."""
    return list(_named(output, OUTPUT_NAME))


def tensor_leaves(output: Any) -> tuple[torch.Tensor, ...]:
    """Every tensor in a forward's output, in order (see :func:`named_tensors`)."""
    return tuple(tensor for _, tensor in _named(output, OUTPUT_NAME))


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
