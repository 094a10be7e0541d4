"""Built-in architectures, registered by name; random initialisation only (no hub downloads);
and the input size any model declares, which every default input shape is taken from."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ._logs import warn_once
from .sparse.swin import SparseSwin

logger = logging.getLogger(__name__)

# The input of a model that declares none (torchvision's Swin, the built-in models): SparseViT's
# high-resolution setting, where most windows can be skipped (at 224x224 a Swin-T's last stages
# hold 4 and 1 windows).
DEFAULT_INPUT_SHAPE = (1, 3, 672, 672)

_REGISTRY: dict[str, Callable[..., SparseSwin]] = {}


def register_model(fn: Callable[..., SparseSwin]) -> Callable[..., SparseSwin]:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, *, seed: int | None = 0, **kwargs) -> SparseSwin:
    """Build a registered model in eval mode.

    ``seed`` makes the random weights reproducible (None leaves torch's global RNG alone);
    other keyword arguments override the variant's defaults (e.g. ``num_classes=10``).

    Args:
        name: a registered architecture (:func:`list_models`): ``swin_micro``, ``swin_t``,
            ``swin_s``, ``swin_b``, ``swinv2_micro``, ``swinv2_t``, ``swinv2_t_window16``.
        seed: seed of the random initial weights (no pretrained weights are loaded).
        **kwargs: :class:`SparseSwin` arguments that override the variant's defaults.

    Returns:
        The :class:`SparseSwin`, dense (sparsity 0), in eval mode; its forward maps images
        ``(B, C, H, W)`` to the four stage maps ``(B, C_i, H_i, W_i)``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    if seed is None:
        return _REGISTRY[name](**kwargs).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _REGISTRY[name](**kwargs).eval()


def _swin(defaults: dict, kwargs: dict) -> SparseSwin:
    return SparseSwin(**{**defaults, **kwargs})


@register_model
def swin_micro(**kwargs) -> SparseSwin:
    """A 4-stage Swin small enough for tests and CPU demos (~1.3 M parameters)."""
    return _swin(dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)), kwargs)


@register_model
def swin_t(**kwargs) -> SparseSwin:
    """Swin-T (Liu et al. 2021): C=96, depths 2-2-6-2."""
    return _swin(dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)), kwargs)


@register_model
def swin_s(**kwargs) -> SparseSwin:
    """Swin-S: C=96, depths 2-2-18-2."""
    return _swin(dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)), kwargs)


@register_model
def swin_b(**kwargs) -> SparseSwin:
    """Swin-B: C=128, depths 2-2-18-2."""
    return _swin(dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)), kwargs)


@register_model
def swinv2_micro(**kwargs) -> SparseSwin:
    """swin_micro's shapes with Swin V2 blocks (window 8), for tests and CPU demos."""
    return _swin(dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=8, block="v2"), kwargs)


@register_model
def swinv2_t(**kwargs) -> SparseSwin:
    """Swin V2-T (Liu et al. 2022): C=96, depths 2-2-6-2, window 8 (the 256-px ImageNet-1k model;
    ``window_size=16`` gives the window-16 variant, ``pretrained_window_size`` its fine-tuned ones)."""
    return _swin(dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=8, block="v2"), kwargs)


@register_model
def swinv2_t_window16(**kwargs) -> SparseSwin:
    """Swin V2-T with window 16 (timm's ``swinv2_tiny_window16_256``), the high-resolution shape."""
    return swinv2_t(**{"window_size": 16, **kwargs})


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def declared_input_shape(model: nn.Module) -> tuple[int, int, int, int] | None:
    """The input ``(1, C, H, W)`` ``model`` says it takes, or None where it says nothing.

    A Hugging Face model: ``config.image_size`` and ``config.num_channels``.  A timm model: the
    size it was built for (``patch_embed.img_size``, which ``img_size=`` and ``set_input_size``
    change), else ``pretrained_cfg['input_size']`` (or ``default_cfg``), which keeps the
    pretrained size whatever the model was built for.  torchvision's Swin and the built-in
    models declare none.
    """
    config = getattr(model, "config", None)
    if getattr(config, "image_size", None) is not None:
        return (1, int(getattr(config, "num_channels", 3)), *_pair(config.image_size))
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        channels, *size = cfg["input_size"]
        built = getattr(getattr(model, "patch_embed", None), "img_size", None)
        return (1, int(channels), *_pair(built if built is not None else size))
    return None


def input_shape_for(model: nn.Module, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
    """``input_shape`` as given, or by default the one ``model`` declares (:func:`declared_input_shape`;
    :data:`DEFAULT_INPUT_SHAPE` where it declares none).  A given shape whose channels or size differ
    from the declared ones is named, with them, in a warning (once): a model trained at 224 px
    searched at 672 px is a choice to make knowingly."""
    declared = declared_input_shape(model)
    if input_shape is None:
        return declared or DEFAULT_INPUT_SHAPE
    shape = tuple(input_shape)
    if declared is not None and shape[1:] != declared[1:]:
        given, says = "x".join(map(str, shape[1:])), "x".join(map(str, declared[1:]))
        warn_once(logger, f"{type(model).__name__} {given} {says}",
                  "input %s (C x H x W) differs from the %s %s declares; pass input_shape=(B, %s) for its own, "
                  "or keep this one knowingly", given, says, type(model).__name__, ", ".join(map(str, declared[1:])))
    return shape
