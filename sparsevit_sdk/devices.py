"""Turn a user's device and dtype into torch's, or say clearly why they cannot be used.

A dtype is named the same everywhere in the API, in profiles and in predictor files: "fp32",
"fp16", "bf16" (:data:`~sparsevit_sdk.arch.DTYPE_BYTES`); a ``torch.dtype`` is accepted too.
"""

from __future__ import annotations

import torch

from .arch import DTYPE_BYTES

TORCH_DTYPES: dict[str, torch.dtype] = dict(zip(DTYPE_BYTES, (torch.float32, torch.float16, torch.bfloat16)))


def dtype_name(dtype: str | torch.dtype) -> str:
    """The SDK's name of ``dtype`` (given as that name or as a ``torch.dtype``)."""
    for name, value in TORCH_DTYPES.items():
        if dtype == name or dtype == value:
            return name
    raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(TORCH_DTYPES)} (or its torch.dtype)")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` → ``torch.device``, checked against this machine."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda:N'") from err
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"unsupported device {device!r}; use 'cpu' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but CUDA is not available on this machine "
            f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
        )
    index = 0 if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)
