"""Temporary model state: an SDK call that only reads a model borrows it, and gives it back as it was.

Adaptation, every proxy evaluation, an export, a validation and a latency measurement change
the model for a while: its sparsity, train/eval mode, and for some its device or dtype.  The
caller's model must come back exactly as it was (every module's mode, the sparsity and window
score of every stage, each tensor bit for bit), on error and on Ctrl-C too, or a search would
silently score the wrong config and an export would round the user's weights.

Sparsity is state of the one model object, so two threads cannot run one model at two
configs.  :func:`preserved` takes a per-model re-entrant lock, so SDK calls that borrow the same
model serialize, and while it is held a forward of that model from any other thread raises
(it would silently run at the borrowed config): one copy of the model per thread
(``copy.deepcopy(model)``) is the fix.  The check is one forward pre-hook on the first block,
present only while the model is borrowed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn

from ..config import SparsityConfig
from .convert import sparse_backbone
from .swin import SparseSwin

_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_owners: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()  # guarded module → thread id
_table_lock = threading.Lock()


def restore_sparsity(backbone: SparseSwin, saved: list[list[float]]) -> None:
    """Put back per-block sparsity read earlier from ``backbone.block_sparsity``."""
    for stage, values in zip(backbone.stages, saved):
        stage.sparsity = values


def _refuse_other_threads(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of a borrowed model: only the borrowing thread may run it."""
    if torch.compiler.is_compiling():  # a graph being traced inside the borrowing call
        return
    owner = _owners.get(module)
    if owner is not None and owner != threading.get_ident():
        raise RuntimeError(
            "this model is in use by a sparsevit_sdk call in another thread, which has set it to another sparsity, "
            "mode or dtype for a while, so this forward would silently run at that borrowed state; give each "
            "thread its own copy of the model (copy.deepcopy(model)), or run this after that call returns"
        )


@contextmanager
def _borrowed(model: nn.Module, backbone: SparseSwin | None) -> Iterator[None]:
    """Hold ``model``'s lock; while the outermost hold lasts, a forward from another thread raises."""
    key = model if backbone is None else backbone
    guarded = model if backbone is None else backbone.stages[0].blocks[0]  # every forward runs it
    with _table_lock:
        lock = _locks.setdefault(key, threading.RLock())
    with lock:
        if guarded in _owners:  # this thread holds it already (re-entered)
            yield
            return
        _owners[guarded] = threading.get_ident()
        handle = guarded.register_forward_pre_hook(_refuse_other_threads)
        try:
            yield
        finally:
            handle.remove()
            del _owners[guarded]


@contextmanager
def _modes_kept(modules: list[nn.Module]) -> Iterator[None]:
    """Put back every module's own train/eval flag (``model.train(mode)`` would set them all alike)."""
    saved = [(m, m.training) for m in modules]
    try:
        yield
    finally:
        for module, training in saved:
            module.training = training


@contextmanager
def _tensors_kept(model: nn.Module) -> Iterator[None]:
    """Put back every parameter (with its data and gradient) and buffer object of ``model``.

    ``model.to(device, dtype)`` casts into new tensors and leaves the old ones untouched, so
    holding the old ones and swapping them back restores the model bit for bit, mixed dtypes
    included, at no memory beyond the cast copies themselves (a deep copy would add a whole model).
    """
    params = [(m, name, p, p.data, p.grad) for m in model.modules()
              for name, p in m.named_parameters(recurse=False, remove_duplicate=False)]
    buffers = [(m, name, b) for m in model.modules() for name, b in m.named_buffers(recurse=False,
                                                                                      remove_duplicate=False)]
    try:
        yield
    finally:
        for module, name, param, data, grad in params:
            setattr(module, name, param)  # the same Parameter object, which an optimizer may hold
            param.data = data
            param.grad = grad
        for module, name, buffer in buffers:
            setattr(module, name, buffer)


@contextmanager
def preserved(
    model: nn.Module, *, training: bool, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> Iterator[nn.Module]:
    """Borrow ``model``: put it in train or eval mode (and on ``device`` / in ``dtype`` if given);
    on exit, however it is left, restore every module's mode, the sparsity and window score of a
    sparse Swin in it, and each parameter and buffer bit for bit.

    SDK calls that borrow one model from several threads take turns; a plain forward of the model
    from another thread meanwhile raises a RuntimeError naming the fix (a copy per thread).
    """
    try:
        backbone = sparse_backbone(model)
    except TypeError:  # a model with no sparse Swin (a dense baseline being timed): mode and tensors only
        backbone = None
    modules = list({id(m): m for m in [*model.modules(), *(backbone.modules() if backbone else ())]}.values())
    cast = device is not None or dtype is not None
    with _borrowed(model, backbone), _modes_kept(modules), _tensors_kept(model) if cast else nullcontext():
        if backbone is not None:
            saved_sparsity = backbone.block_sparsity
            saved_scores = [stage.window_score for stage in backbone.stages]
        try:
            model.train(training)
            if cast:
                model.to(device=device, dtype=dtype)
            yield model
        finally:
            if backbone is not None:
                restore_sparsity(backbone, saved_sparsity)
                for stage, score in zip(backbone.stages, saved_scores):
                    stage.window_score = score


def check_config(model: nn.Module, config: SparsityConfig) -> None:
    """Refuse a config made for another architecture before anything runs."""
    if not isinstance(config, SparsityConfig):
        raise TypeError(f"expected a SparsityConfig, got {type(config).__name__}")
    config.check_model(sparse_backbone(model).signature)
