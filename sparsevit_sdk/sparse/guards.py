"""What a sparse stage checks on the way in, and keeps in its state_dict.

Kernel errors name shapes and dtypes deep inside a block; a user needs the cause at the door: an
empty input, or an input of another dtype than the weights.  And a stage's sparsity is part of
the model's state: saved with its weights while it skips windows, absent (the source library's
keys, exactly) when it is dense.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def check_input(x: torch.Tensor, weight: torch.Tensor) -> None:
    """Name the problem a bare kernel error would hide: an empty map, or an input of another
    dtype than the weights (outside autocast, which casts on its own)."""
    if x.numel() == 0:
        raise ValueError(f"a sparse Swin got an empty input {tuple(x.shape)}: give a batch of one or more images "
                         "with at least one pixel on each side")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"the input is {x.dtype} and the model's weights are {weight.dtype}: cast one to the other "
                        f"(x.to({weight.dtype}) or model.to({x.dtype}))")


SPARSITY_KEY = "sparsity"  # a stage's state_dict entry while it skips windows (absent when dense)


def save_sparsity(stage: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """Sparsity is the model's state, so it is saved; a dense stage saves nothing, so its
    state_dict stays the source library's, key for key (timm and HF checkpoints load either way)."""
    if any(stage.sparsity):
        state_dict[prefix + SPARSITY_KEY] = torch.tensor(stage.sparsity, dtype=torch.float64)


def load_sparsity(stage: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                  missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """Set the saved sparsity (none saved: the checkpoint was dense); a value no stage can take
    is reported as load_state_dict reports a bad tensor, and leaves the stage as it was."""
    saved = state_dict.pop(prefix + SPARSITY_KEY, None)
    values = [0.0] * len(stage.blocks) if saved is None else torch.as_tensor(saved, dtype=torch.float64).tolist()
    if (not isinstance(values, list) or len(values) != len(stage.blocks)
            or not all(isinstance(v, float) and 0.0 <= v < 1.0 for v in values)):
        error_msgs.append(f"{prefix}{SPARSITY_KEY}: expected one sparsity in [0, 1) per block ({len(stage.blocks)}), "
                          f"got {saved!r}")
        return
    stage.sparsity = values
