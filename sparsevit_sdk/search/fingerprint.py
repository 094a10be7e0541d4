"""What a search's scores and latencies are of: the fingerprint of the model searched.

A checkpoint holds hours of scores and the rest-of-model latency measured when the search began.
Resumed with other weights, or with another head on the same backbone, the search would mix two
models' numbers without a sign.  So a session records the model's fingerprint in its checkpoint,
and a resume compares it with the model it is given (:func:`check_same_model`):

- ``structure``: the model's class and every parameter and buffer name, dtype and shape (another
  head or width changes it);
- ``weights``: that and their bytes (other weights of the same model change it);
- ``flops``: the floating-point operations of one forward, as the user calls the model, of one
  image at the search's size, dense (a head that does more work changes it, even one without
  parameters).

Sparsity is no parameter or buffer (see :mod:`sparsevit_sdk.sparse.guards`) and the FLOPs are
counted dense, so a search setting it changes none of them.  Hashing costs about 0.1 s per
100 MB of weights; counting, one forward.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .._documents import Field
from ..config import SearchSpace
from ..profiler.forward import ModelForward
from ..sparse.convert import set_sparsity
from ..sparse.state import preserved


def model_fingerprint(forward: ModelForward, space: SearchSpace, input_shape: Sequence[int]) -> dict[str, Any]:
    """The ``structure``, ``weights`` and ``flops`` of the model ``forward`` runs (see the module docstring)."""
    model = forward.model
    structure = hashlib.blake2b(type(model).__qualname__.encode(), digest_size=8)
    weights = structure.copy()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        described = f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode()
        structure.update(described)
        weights.update(described)
        weights.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    weight = next(model.parameters())  # an image of the weights' device and dtype
    image = torch.zeros(1, *input_shape[1:], device=weight.device, dtype=weight.dtype)
    with preserved(model, training=False), torch.no_grad(), FlopCounterMode(display=False) as counter:
        set_sparsity(forward.backbone, space.dense())
        forward(image)
    return {"structure": structure.hexdigest(), "weights": weights.hexdigest(), "flops": counter.get_total_flops()}


def check_fingerprint(field: Field) -> None:
    """Refuse a checkpoint's recorded fingerprint unless it has every entry, of its type."""
    field["structure"].text()
    field["weights"].text()
    field["flops"].number(integer=True, minimum=0)


def check_same_model(path: str | os.PathLike, searched: dict[str, Any], given: dict[str, Any], rest_ms: float) -> None:
    """Refuse to resume the search checkpointed at ``path`` of the model fingerprinted ``searched``
    with the model fingerprinted ``given``, naming every difference and the fix."""
    differ = []
    if given["structure"] != searched["structure"]:
        differ.append("its parameters and buffers differ in name, dtype or shape (another head or width?)")
    elif given["weights"] != searched["weights"]:
        differ.append(f"its weights differ (fingerprint {given['weights']}, the search's {searched['weights']})")
    if given["flops"] != searched["flops"]:
        differ.append(f"one forward of an image does {given['flops'] / 1e9:.4g} GFLOP, the searched model's "
                      f"{searched['flops'] / 1e9:.4g} (a heavier or lighter head?)")
    if differ:
        raise ValueError(
            f"{path}: the search was of another model than this one: {'; '.join(differ)}. Its scores and its "
            f"rest-of-model latency ({rest_ms:.4g} ms) are not this model's: start a new search of this model with "
            "a new checkpoint (checkpoint=, --checkpoint), or resume with the model the search was started with")
