"""Window-sparse Swin Transformer: the whole backbone, read as the data meets it.

Patch embedding → stages (``stage.py``: patch merging, window scoring, then blocks running
``attention.py`` on their kept windows) → final norm → head.

Activations are NHWC, as in timm.  Each stage pads its input once to a multiple of the
window size, works on the flattened ``(B * Hp * Wp, C)`` buffer in place, and crops at
the end.  A pruned window is never read or written, so it passes through exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arch import Architecture, format_signature, padding
from .attention import BlockKind, check_block_kind
from .guards import check_input
from .stage import SparseSwinStage
from .windows import DEFAULT_WINDOWING, Windowing


class PatchEmbed(nn.Module):
    """Image ``(B, C, H, W)`` → tokens ``(B, H/p, W/p, D)``; pads H and W up to multiples of p."""

    def __init__(self, in_chans: int = 3, embed_dim: int = 96, patch_size: int = 4) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected an image batch of shape (B, {self.in_chans}, H, W), got "
                f"{tuple(x.shape)}; convert grayscale/RGBA inputs to {self.in_chans} channels"
            )
        p = self.patch_size
        pad_h, pad_w = padding(x.shape[2], p), padding(x.shape[3], p)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, H/p, W/p, D)




def _per_stage(value: int | Sequence[int], stages: int, name: str) -> tuple[int, ...]:
    """One int per stage from one value for all or a sequence of ``stages`` values."""
    values = [value] * stages if isinstance(value, int) else list(value)
    if len(values) != stages:
        raise ValueError(f"{name} needs one value per stage ({stages}), got {values}")
    return tuple(int(v) for v in values)


class SparseSwin(nn.Module):
    """Swin Transformer backbone whose blocks skip their least important windows.

    ``forward`` returns the four stage feature maps ``(B, C_i, H_i, W_i)`` (a detection /
    segmentation backbone); ``forward_features`` returns the final-normed last stage
    ``(B, H, W, C)`` as timm does, and ``forward_head`` pools it into logits.

    ``patch_embed`` is any module from images to NHWC tokens; a converted model uses its
    source's own (``sparsify``), so the source's padding or size checks hold unchanged.
    ``block="v2"`` builds Swin V2 (cosine attention, continuous position bias, post-norm);
    ``pretrained_window_size`` (one value, or one per stage) is the window its position-bias
    MLP was trained at, which rescales the bias inputs when fine-tuning at a larger window.
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 7,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        num_classes: int = 0,
        fused_qkv: bool = True,
        windowing: Windowing = DEFAULT_WINDOWING,
        block: BlockKind = "v1",
        pretrained_window_size: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
        self.block = check_block_kind(block)
        self.depths = tuple(int(d) for d in depths)
        self.num_heads = tuple(int(h) for h in num_heads)
        self.embed_dim = embed_dim
        self.window_size = _per_stage(window_size, len(depths), "window_size")
        pretrained = _per_stage(pretrained_window_size, len(depths), "pretrained_window_size")
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.mlp_ratio = float(mlp_ratio)
        self.patch_embed: nn.Module = PatchEmbed(in_chans, embed_dim, patch_size)
        dims = [embed_dim * 2**i for i in range(len(depths))]
        self.dims = tuple(dims)
        self.stages = nn.Sequential(*(
            SparseSwinStage(
                dims[max(i - 1, 0)], dims[i], depths[i], num_heads[i], self.window_size[i],
                downsample=i > 0, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, fused_qkv=fused_qkv,
                windowing=windowing, kind=block, pretrained_window_size=pretrained[i],
            )
            for i in range(len(depths))
        ))
        self.norm = nn.LayerNorm(dims[-1])
        self.num_classes = num_classes
        self.head = nn.Linear(dims[-1], num_classes) if num_classes else nn.Identity()

    @property
    def signature(self) -> str:
        """Architecture id stored with every config, so a config cannot be applied to a
        model whose knobs mean something else (format: :func:`sparsevit_sdk.arch.format_signature`)."""
        return format_signature(self.embed_dim, self.depths, self.num_heads, self.window_size, self.patch_size,
                                self.block)

    @property
    def architecture(self) -> Architecture:
        """What decides this model's unit shapes and costs, for the profiler and the predictors."""
        return Architecture(self.signature, self.embed_dim, self.depths, self.num_heads, self.window_size,
                            self.patch_size, self.mlp_ratio, self.in_chans, self.block)

    @property
    def block_sparsity(self) -> list[list[float]]:
        """Current sparsity of every block, per stage."""
        return [list(stage.sparsity) for stage in self.stages]

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image ``(B, C, H, W)`` → NHWC output of every stage."""
        check_input(x, next(self.patch_embed.parameters()))
        x = self.patch_embed(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [o.permute(0, 3, 1, 2).contiguous() for o in self.stage_outputs(x)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stage_outputs(x)[-1])  # (B, H, W, C)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Average-pool NHWC features and classify: ``(B, num_classes)``."""
        return self.head(features.mean(dim=(1, 2)))
