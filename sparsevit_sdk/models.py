"""Built-in architectures, registered by name; random initialisation only (no hub downloads)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .sparse.swin import SparseSwin

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
