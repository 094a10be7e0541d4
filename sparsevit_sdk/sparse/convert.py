"""``sparsify()``: turn a timm or torchvision Swin into a :class:`SparseSwin` that shares
its parameters (no copy: fine-tuning one fine-tunes the other)."""

from __future__ import annotations

import torch.nn as nn

from .swin import SparseSwin, SparseSwinBlock

SUPPORTED = (
    "sparsevit_sdk SparseSwin, timm SwinTransformer (v1, timm >= 0.9), "
    "torchvision swin_t / swin_s / swin_b (v1)"
)


def _share(dst: nn.Module, src: nn.Module) -> None:
    """Point every parameter of ``dst`` at the same-named parameter of ``src``."""
    src_params = dict(src.named_parameters())
    for name, param in list(dst.named_parameters()):
        if name not in src_params or src_params[name].shape != param.shape:
            raise TypeError(
                f"cannot map parameter {name!r} of {type(src).__name__}: the layer layout is not "
                f"a Swin v1 layout; supported: {SUPPORTED}"
            )
        owner, _, leaf = name.rpartition(".")
        setattr(dst.get_submodule(owner) if owner else dst, leaf, src_params[name])
    if isinstance(dst, nn.LayerNorm) and isinstance(src, nn.LayerNorm):
        dst.eps = src.eps


def _share_block(dst: SparseSwinBlock, norm1, qkv, proj, table, norm2, fc1, fc2) -> None:
    for d, s in ((dst.norm1, norm1), (dst.attn.qkv, qkv), (dst.attn.proj, proj),
                 (dst.norm2, norm2), (dst.mlp.fc1, fc1), (dst.mlp.fc2, fc2)):
        _share(d, s)
    dst.attn.relative_position_bias_table = table


def _square(window) -> int:
    w = (window, window) if isinstance(window, int) else tuple(window)
    if w[0] != w[1]:
        raise TypeError(f"only square windows are supported, got window size {w}")
    return int(w[0])


def _from_timm(model: nn.Module) -> SparseSwin:
    stages = list(model.layers)
    first = stages[0].blocks[0]
    if not isinstance(model.patch_embed.norm, nn.LayerNorm):
        raise TypeError("timm Swin without patch_norm is not supported")
    sparse = SparseSwin(
        in_chans=model.patch_embed.proj.in_channels,
        embed_dim=model.embed_dim,
        depths=[len(s.blocks) for s in stages],
        num_heads=[s.blocks[0].attn.num_heads for s in stages],
        window_size=[_square(s.blocks[0].window_size) for s in stages],
        patch_size=model.patch_embed.proj.kernel_size[0],
        mlp_ratio=first.mlp.fc1.out_features / first.mlp.fc1.in_features,
        qkv_bias=first.attn.qkv.bias is not None,
        num_classes=model.num_classes,
    )
    _share(sparse.patch_embed, model.patch_embed)
    for dst, src in zip(sparse.stages, stages):
        if not isinstance(src.downsample, nn.Identity):
            _share(dst.downsample, src.downsample)
        for d, b in zip(dst.blocks, src.blocks):
            _share_block(d, b.norm1, b.attn.qkv, b.attn.proj, b.attn.relative_position_bias_table,
                         b.norm2, b.mlp.fc1, b.mlp.fc2)
    _share(sparse.norm, model.norm)
    if model.num_classes:
        _share(sparse.head, model.head.fc)
    return sparse


def _from_torchvision(model: nn.Module) -> SparseSwin:
    feats = model.features
    stages = [feats[i] for i in range(1, len(feats), 2)]
    merges = [feats[i] for i in range(2, len(feats), 2)]
    first = stages[0][0]
    embed = feats[0]
    sparse = SparseSwin(
        in_chans=embed[0].in_channels,
        embed_dim=embed[0].out_channels,
        depths=[len(s) for s in stages],
        num_heads=[s[0].attn.num_heads for s in stages],
        window_size=[_square(s[0].attn.window_size) for s in stages],
        patch_size=embed[0].kernel_size[0],
        mlp_ratio=first.mlp[0].out_features / first.mlp[0].in_features,
        qkv_bias=first.attn.qkv.bias is not None,
        num_classes=model.head.out_features,
    )
    _share(sparse.patch_embed.proj, embed[0])
    _share(sparse.patch_embed.norm, embed[2])
    for dst, merge in zip(sparse.stages[1:], merges):
        _share(dst.downsample, merge)
    for dst, src in zip(sparse.stages, stages):
        for d, b in zip(dst.blocks, src):
            _share_block(d, b.norm1, b.attn.qkv, b.attn.proj, b.attn.relative_position_bias_table,
                         b.norm2, b.mlp[0], b.mlp[3])
    _share(sparse.norm, model.norm)
    _share(sparse.head, model.head)
    return sparse


def sparsify(model: nn.Module) -> SparseSwin:
    """Window-sparse twin of a Swin Transformer, sharing its weights.

    At sparsity 0 its ``forward_features`` equals the source model's final normed
    features (fp32, within 1e-5).  Dropout and stochastic depth are not carried over:
    the result is for inference and sparsity-aware fine-tuning.
    """
    if isinstance(model, SparseSwin):
        return model
    cls, module = type(model).__name__, type(model).__module__
    if cls == "SwinTransformer" and module.startswith("timm."):
        sparse = _from_timm(model)
    elif cls == "SwinTransformer" and module.startswith("torchvision."):
        if type(model.features[1][0]).__name__ != "SwinTransformerBlock":
            raise TypeError(f"torchvision Swin V2 is not supported; supported: {SUPPORTED}")
        sparse = _from_torchvision(model)
    else:
        raise TypeError(f"cannot sparsify {module}.{cls}; supported models: {SUPPORTED}")
    return sparse.train(model.training)
