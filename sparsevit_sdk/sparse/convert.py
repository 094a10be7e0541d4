"""``sparsify()``: make a user's Swin window-sparse, keeping it the same model.

The Swin stages of a timm, torchvision or Hugging Face model are swapped for window-sparse ones
that run on the source's own weights (shared, never copied) under the source's windowing
convention; everything around them (stem, heads, output classes, a segmentation model's decoder)
keeps running the source library's code.  So the model is called exactly as before and, at
sparsity 0, returns what it returned before.

Every swapped Swin also carries a :class:`SparseSwin` *view* over its sparse stages, which the
rest of the SDK works on: ``sparse_backbone(model)`` finds it, ``set_sparsity(model, config)``
sets it, ``search_space(model)`` lists its knobs, and the profiler, predictors and search read
its architecture.
"""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

import torch.nn as nn

from ..config import SearchSpace, SparsityConfig
from .sources import hf, hf_v2, timm, torchvision
from .swin import SparseSwin
from .windows import WINDOW_SCORES, WindowScore

SOURCES: tuple[ModuleType, ...] = (timm, torchvision, hf, hf_v2)  # each: NAME, SUPPORTED, matches(m), convert(m)
SUPPORTED = "; ".join(["sparsevit_sdk SparseSwin", *(s.SUPPORTED for s in SOURCES)])
_VIEW = "_sparsevit_view"  # where a converted module keeps its SparseSwin view (outside its state_dict)


def _source(module: nn.Module) -> ModuleType | None:
    return next((s for s in SOURCES if s.matches(module)), None)


def _swins(model: nn.Module) -> list[tuple[str, ModuleType]]:
    """(path, source) of every outermost supported Swin inside ``model``, ``model`` itself included."""
    found: list[tuple[str, ModuleType]] = []
    done: list[str] = []  # subtrees already searched: a found Swin, or one that is sparse already
    for path, module in model.named_modules():
        if any(p == "" or path == p or path.startswith(p + ".") for p in done):
            continue
        source = _source(module)
        if _VIEW in module.__dict__ or isinstance(module, SparseSwin) or source is not None:
            done.append(path)
        if source is not None and _VIEW not in module.__dict__:
            found.append((path, source))
    return found


def _shallow(module: nn.Module, memo: dict) -> nn.Module:
    """A new module object sharing ``module``'s parameters, buffers and children, whose own
    child slots can be replaced without touching ``module``.  A Hugging Face ``config`` is copied
    (once per config object, through ``memo``): a sparse model records its state there."""
    clone = copy.copy(module)
    clone._modules, clone._parameters, clone._buffers = (
        dict(module._modules), dict(module._parameters), dict(module._buffers)
    )
    if "config" in clone.__dict__:
        clone.config = copy.deepcopy(module.config, memo)
    return clone


def _detach_paths(model: nn.Module, paths: list[str]) -> nn.Module:
    """A shallow copy of ``model`` in which every module on the way to ``paths`` is a fresh
    :func:`_shallow` copy, so swapping children there leaves ``model`` as it was."""
    memo: dict = {}  # a config shared by several modules (a classifier's and its Swin's) stays shared
    root = _shallow(model, memo)
    for path in paths:
        parent = root
        for name in path.split(".") if path else []:
            child = _shallow(parent._modules[name], memo)
            parent._modules[name] = child
            parent = child
    return root


def sparsify(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Make every supported Swin in ``model`` window-sparse; call the result as you called ``model``.

    ``sparsify(timm_model)(x)`` gives timm's logits, ``sparsify(hf_backbone)(pixel_values)`` a
    ``BackboneOutput`` with the same ``feature_maps``, and so on: at sparsity 0 the result equals
    its source's forward (fp32, within 1e-5, at any input size the source accepts).  Without
    ``inplace`` the result is a new module object sharing every weight with ``model``, which is
    left as it was; with ``inplace=True`` the Swins inside ``model`` (e.g. a Mask2Former's
    backbone) are swapped where they are and ``model`` itself is returned.  Then
    ``set_sparsity(result, config)`` makes the blocks skip windows.  Dropout and stochastic depth
    of the source's blocks are not carried over: the result is for inference and sparsity-aware
    fine-tuning.

    Args:
        model: a timm ``SwinTransformer`` / ``SwinTransformerV2``, a torchvision ``swin_*`` /
            ``swin_v2_*``, a Hugging Face ``SwinModel`` / ``SwinBackbone`` /
            ``SwinForImageClassification`` (or their V2), any model holding one (a Mask2Former,
            an UperNet), or a :class:`SparseSwin` (returned as it is).
        inplace: swap the Swins inside ``model`` itself instead of returning a new module.

    Returns:
        The window-sparse model, at sparsity 0: a new module sharing ``model``'s weights, or
        ``model`` itself with ``inplace=True`` (or when it is already sparse).

    Raises:
        TypeError: ``model`` is no ``nn.Module``, holds no supported Swin, or uses a feature the
            kernels do not support (non-square windows, stage widths that do not double), named.
    """
    if isinstance(model, SparseSwin):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"cannot sparsify a {type(model).__name__}; supported models: {SUPPORTED}")
    swins = _swins(model)
    if not swins:
        if any(_VIEW in m.__dict__ for m in model.modules()):
            return model  # already sparse
        raise TypeError(f"cannot sparsify {type(model).__module__}.{type(model).__name__}: no supported Swin "
                        f"inside it; supported models: {SUPPORTED}")
    root = model if inplace else _detach_paths(model, [path for path, _ in swins])
    for path, source in swins:
        module = root.get_submodule(path)
        module.__dict__[_VIEW] = source.convert(module).train(module.training)
    return root


def sparse_backbone(model: nn.Module) -> SparseSwin:
    """The one :class:`SparseSwin` of ``model``: itself, a SparseSwin inside it, or the view of a
    Swin that :func:`sparsify` swapped inside it."""
    if isinstance(model, SparseSwin):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a model (torch.nn.Module), got {type(model).__name__} {model!r}; every call "
                        "takes (model, input_shape, ...), e.g. for_device(model, input_shape, 'cpu')")
    views: dict[int, SparseSwin] = {}
    for module in model.modules():
        view = module.__dict__.get(_VIEW, module if isinstance(module, SparseSwin) else None)
        if view is not None:
            views[id(view)] = view
    if len(views) == 1:
        return next(iter(views.values()))
    if not views:
        raise TypeError(f"{type(model).__name__} holds no window-sparse Swin; call sparsevit_sdk.sparsify(model) "
                        f"first (supported: {SUPPORTED})")
    raise TypeError(f"{type(model).__name__} holds {len(views)} window-sparse Swins; pass the one to work on")


def search_space(model: nn.Module, **options: Any) -> SearchSpace:
    """The knobs of the sparse Swin in ``model``; ``options`` (``granularity``, ``grid``,
    ``monotonic``) as for :class:`~sparsevit_sdk.config.SearchSpace`.

    Args:
        model: a built-in model, a :class:`SparseSwin` or a model :func:`sparsify` made.
        **options: ``granularity`` (``"pair"``, one knob per W-MSA + SW-MSA block pair, or
            ``"block"``), ``grid`` (the sparsity ratios, default 0.0, 0.1, ..., 0.8) and
            ``monotonic`` (sparsity non-decreasing within a stage, default True).

    Returns:
        The :class:`~sparsevit_sdk.config.SearchSpace`: knobs, grid and the model's signature;
        ``uniform(s)``, ``dense()``, ``sparsest()``, ``sample(rng)`` and ``config(ratios)`` make
        :class:`~sparsevit_sdk.config.SparsityConfig` objects for it.

    Raises:
        TypeError: ``model`` holds no window-sparse Swin (call :func:`sparsify` first) or several.
    """
    backbone = sparse_backbone(model)
    return SearchSpace(backbone.depths, backbone.signature, **options)


def set_sparsity(model: nn.Module, config: SparsityConfig) -> nn.Module:
    """Make every block of the sparse Swin in ``model`` skip its share of windows as ``config``
    says; validated (model, knob count, order along each stage unless ``config.monotonic`` is
    False) before anything changes.  Returns ``model``.

    Args:
        model: a built-in model, a :class:`SparseSwin` or a model :func:`sparsify` made.
        config: one sparsity (share of windows skipped, 0.0 to below 1.0) per knob, made by
            :func:`search_space` for this model (or read from a result or a JSON file).

    Returns:
        ``model`` itself, whose blocks now keep ``int(nW * (1 - s))`` of their ``nW`` windows.

    Raises:
        ValueError: ``config`` is for another model (signature), has the wrong number of knobs,
            or decreases within a stage.
    """
    backbone = sparse_backbone(model)
    per_block = config.block_sparsity(backbone.signature, backbone.depths)
    for stage, values in zip(backbone.stages, per_block):
        stage.sparsity = list(values)
    return model


def set_window_score(model: nn.Module, measure: WindowScore) -> nn.Module:
    """How every stage of the sparse Swin in ``model`` ranks its windows: ``"norm"`` (SparseViT, the
    default) or ``"deviation"`` (see :meth:`~sparsevit_sdk.sparse.windows.WindowLayout.window_scores`);
    returns ``model``.  Like the sparsity, it is saved with the model (state_dict, and a Hugging Face
    model's config) unless it is the default."""
    if measure not in WINDOW_SCORES:
        raise ValueError(f"unknown window score {measure!r}; choose one of {', '.join(WINDOW_SCORES)}")
    for stage in sparse_backbone(model).stages:
        stage.window_score = measure
    return model
