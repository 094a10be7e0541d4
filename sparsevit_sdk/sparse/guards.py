"""What a sparse stage checks on the way in, and keeps in its state_dict.

Kernel errors name shapes and dtypes deep inside a block; a user needs the cause at the door: an
empty input, or an input of another dtype than the weights.  And a stage's sparsity and window
score are part of the model's state: saved with its weights while they differ from a fresh
stage's, absent (the source library's keys, exactly) when the stage is dense and ranks windows
by the default score.  A checkpoint's values pass the rule ``set_sparsity`` applies
(``config.normalized_sparsity``, ``config.decreases``) or are refused with the key that holds them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..config import decreases, normalized_sparsity
from .windows import DEFAULT_WINDOW_SCORE, WINDOW_SCORES


def check_input(x: torch.Tensor, weight: torch.Tensor) -> None:
    """Name the problem a bare kernel error would hide: an empty map, or an input of another
    dtype than the weights (outside autocast, which casts on its own)."""
    if x.numel() == 0:
        raise ValueError(f"a sparse Swin got an empty input {tuple(x.shape)}: give a batch of one or more images "
                         "with at least one pixel on each side")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"the input is {x.dtype} and the model's weights are {weight.dtype}: cast one to the other "
                        f"(x.to({weight.dtype}) or model.to({x.dtype}))")


SPARSITY_KEY = "sparsity"  # one float64 per block, while the stage skips windows
ORDER_KEY = "sparsity_monotonic"  # False where that sparsity decreases (set by a monotonic=False config)
SCORE_KEY = "window_score"  # the score's name as ASCII bytes (uint8), when it is not the default
STATE_KEYS = (SPARSITY_KEY, ORDER_KEY, SCORE_KEY)


def stage_state(stage: nn.Module) -> dict[str, Any]:
    """What sets ``stage`` apart from a fresh stage, as plain (JSON) values under :data:`STATE_KEYS`."""
    state: dict[str, Any] = {}
    if any(stage.sparsity):
        state[SPARSITY_KEY] = list(stage.sparsity)
        if decreases(stage.sparsity):
            state[ORDER_KEY] = False
    if stage.window_score != DEFAULT_WINDOW_SCORE:
        state[SCORE_KEY] = stage.window_score
    return state


def set_stage_state(stage: nn.Module, state: dict[str, Any], where: str) -> None:
    """Give ``stage`` the state :func:`stage_state` returned (a key left out: a fresh stage's value),
    or raise a ValueError naming ``where`` + the key, leaving the stage as it was."""
    depth = len(stage.blocks)
    sparsity = state.get(SPARSITY_KEY, [0.0] * depth)
    if (not isinstance(sparsity, list) or len(sparsity) != depth
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in sparsity)):
        raise ValueError(f"{where}{SPARSITY_KEY}: expected one sparsity per block ({depth}), got {sparsity!r:.200}; "
                         "save the model again after set_sparsity(model, config), or drop the key to load the "
                         "stage dense")
    values = [normalized_sparsity(v, f"{where}{SPARSITY_KEY}[{i}]") for i, v in enumerate(sparsity)]
    monotonic = state.get(ORDER_KEY, True)
    if not isinstance(monotonic, bool):
        raise ValueError(f"{where}{ORDER_KEY}: expected False (or no such key), got {monotonic!r:.100}")
    if monotonic and decreases(values):
        raise ValueError(f"{where}{SPARSITY_KEY}: sparsity {values} decreases along the stage, which set_sparsity "
                         "refuses unless the config says monotonic=False; if these are fractions of windows kept, "
                         f"store 1 - kept; if the order is meant, set {where}{ORDER_KEY} to False (a model set "
                         "by a SparsityConfig(..., monotonic=False) saves it so)")
    score = state.get(SCORE_KEY, DEFAULT_WINDOW_SCORE)
    if score not in WINDOW_SCORES:
        raise ValueError(f"{where}{SCORE_KEY}: unknown window score {score!r:.100}; choose one of "
                         f"{', '.join(WINDOW_SCORES)} (what set_window_score(model, score) takes)")
    stage.sparsity, stage.window_score = values, score


def _to_tensor(key: str, value: Any) -> torch.Tensor:
    if key == SCORE_KEY:
        return torch.tensor(list(value.encode("ascii")), dtype=torch.uint8)
    return torch.tensor(value, dtype=torch.bool if key == ORDER_KEY else torch.float64)


def _from_tensor(key: str, tensor: Any, where: str) -> Any:
    """The plain value :func:`_to_tensor` stored, or a ValueError naming a tensor it cannot have written."""
    t = torch.as_tensor(tensor)
    if key == SPARSITY_KEY and t.ndim == 1 and t.is_floating_point():
        return t.double().tolist()
    if key == ORDER_KEY and t.dtype == torch.bool and t.numel() == 1:
        return bool(t.item())
    if key == SCORE_KEY and t.dtype == torch.uint8 and t.ndim == 1:
        return bytes(t.tolist()).decode("ascii", errors="replace")
    raise ValueError(f"{where}{key}: a {t.dtype} tensor of shape {tuple(t.shape)} cannot hold a stage's {key}; "
                     "save the model again with sparsevit_sdk, or drop the key")


def save_stage_state(stage: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """State_dict post-hook: the stage's :func:`stage_state` as tensors under ``prefix``."""
    for key, value in stage_state(stage).items():
        state_dict[prefix + key] = _to_tensor(key, value)


def load_stage_state(stage: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                     missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """Load_state_dict pre-hook: set the saved state; a checkpoint holding the stage's weights but no
    state was saved dense; one holding neither (a head-only load) leaves the stage as it is.  A value
    no stage can take is reported as load_state_dict reports a bad tensor, and changes nothing."""
    saved = {key: state_dict.pop(prefix + key) for key in STATE_KEYS if prefix + key in state_dict}
    if not saved and not any(k.startswith(prefix + "blocks.") for k in state_dict):
        return
    where = prefix  # the keys' names in the checkpoint: the source's, where a converter renamed them
    if stage.saved_under is not None:
        own, source = stage.saved_under
        where = prefix[:len(prefix) - len(own)] + source
    try:
        set_stage_state(stage, {key: _from_tensor(key, t, where) for key, t in saved.items()}, where)
    except ValueError as err:
        error_msgs.append(str(err))
