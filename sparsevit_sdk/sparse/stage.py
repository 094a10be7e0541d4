"""One stage of a window-sparse Swin: patch merging, then blocks that gather their kept windows.

A stage scores its windows once, at its input; each block gathers the rows of the windows it
keeps from the flattened ``(B * Hp * Wp, C)`` buffer, runs LayerNorm → window attention → MLP on
them and scatters them back in place.  A pruned window is never read or written, so it passes
through exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arch import kept_windows, padding
from .attention import BlockKind, WindowAttention, check_block_kind
from .guards import check_input, load_stage_state, save_stage_state
from .windows import (
    DEFAULT_WINDOW_SCORE,
    DEFAULT_WINDOWING,
    Windowing,
    WindowLayout,
    WindowScore,
    pad_to_windows,
    top_windows,
)


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood and project: ``(B, H, W, C)`` → ``(B, ⌈H/2⌉, ⌈W/2⌉, 2C)``.

    Swin V1 normalises the concatenation, then projects; V2 (``post_norm``) projects, then
    normalises the result, as its blocks do.
    """

    def __init__(self, dim: int, out_dim: int, post_norm: bool = False) -> None:
        super().__init__()
        self.post_norm = post_norm
        self.norm = nn.LayerNorm(out_dim if post_norm else 4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = F.pad(x, (0, 0, 0, padding(W, 2), 0, padding(H, 2)))
        H, W = x.shape[1], x.shape[2]
        # channel order x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2] as in Swin
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        if self.post_norm:
            return self.norm(self.reduction(x))
        return self.reduction(self.norm(x))  # (B, H/2, W/2, out_dim)




class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SparseSwinBlock(nn.Module):
    """One Swin block that runs only on the rows of the windows it is given.

    V1 normalises before attention and MLP (``x + attn(norm1(x))``); V2 normalises their
    outputs (``x + norm1(attn(x))``, residual post-norm), which keeps deep, wide V2 models
    stable.  A converter may replace ``norm1``, ``norm2`` and ``mlp`` by its source's own modules
    (any module mapping ``(rows, C)`` to ``(rows, C)``), which carries their epsilon and
    activation over exactly.
    """

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shifted: bool,
        mlp_ratio: float = 4.0, qkv_bias: bool = True, fused_qkv: bool = True,
        kind: BlockKind = "v1", pretrained_window_size: int = 0,
    ) -> None:
        super().__init__()
        self.shifted = shifted
        self.post_norm = check_block_kind(kind) == "v2"
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, fused_qkv, kind, pretrained_window_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self,
        x: torch.Tensor,
        rows: torch.Tensor,
        window_mask: torch.Tensor | None,
        valid: torch.Tensor | None,
        real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Update ``x: (B*Hp*Wp, C)`` in place at ``rows: (B*K*N,)``, and return it (a new tensor
        when the forward is traced or exported, where an in-place scatter would be lost).

        ``valid: (B*K*N, 1)`` zeroes padded tokens where attention reads them (dense Swin
        pads right before attention, so padding must look like zeros to it).  ``real``, positions of the
        unpadded tokens among ``rows``, skips the MLP of padding, which is cropped anyway.
        """
        N = self.attn.window_size**2
        C = x.shape[-1]
        tokens = x.index_select(0, rows)  # (B*K*N, C)
        h = tokens if self.post_norm else self.norm1(tokens)
        if valid is not None:
            h = h * valid
        h = self.attn(h.view(-1, N, C), window_mask).view(-1, C)
        tokens = tokens + (self.norm1(h) if self.post_norm else h)
        if real is not None:  # padding is cropped, so skip its MLP (dense Swin crops before the MLP too)
            tokens, rows = tokens.index_select(0, real), rows.index_select(0, real)
        tokens = tokens + (self.norm2(self.mlp(tokens)) if self.post_norm else self.mlp(self.norm2(tokens)))
        if torch.jit.is_tracing() or torch.compiler.is_exporting():  # a graph holds values, not side effects
            return x.index_copy(0, rows, tokens)
        return x.index_copy_(0, rows, tokens)


class SparseSwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating regular/shifted windows.

    Windows are scored once, at the stage input; each block keeps a prefix of the
    ranking of its partition (regular or shifted), sized by its own sparsity.  ``shift``
    (rows, cols; half a window by default) and ``windowing`` reproduce the source
    library's shifted windows (see :class:`~sparsevit_sdk.sparse.windows.Windowing`); ``kind``
    picks Swin V1 or V2 blocks and merging.
    ``forward`` maps NHWC to NHWC, so the stage drops into a timm model in place of its own.

    ``sparsity`` (one value per block) and ``window_score`` are saved in its state_dict (see
    ``guards.py``); ``on_change``, if set, is called after either is assigned (a Hugging Face model
    records them in its config that way, so ``save_pretrained`` writes them).
    """

    def __init__(
        self, dim: int, out_dim: int, depth: int, num_heads: int, window_size: int,
        downsample: bool, mlp_ratio: float = 4.0, qkv_bias: bool = True, *, fused_qkv: bool = True,
        shift: tuple[int, int] | None = None, windowing: Windowing = DEFAULT_WINDOWING,
        kind: BlockKind = "v1", pretrained_window_size: int = 0,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift = (window_size // 2,) * 2 if shift is None else tuple(int(v) for v in shift)
        self.windowing = windowing
        self.downsample = PatchMerging(dim, out_dim, post_norm=kind == "v2") if downsample else nn.Identity()
        self.blocks = nn.ModuleList(
            SparseSwinBlock(out_dim, num_heads, window_size, i % 2 == 1, mlp_ratio, qkv_bias, fused_qkv,
                            kind, pretrained_window_size)
            for i in range(depth)
        )
        self.on_change: Callable[[], None] | None = None
        self.saved_under: tuple[str, str] | None = None  # (own key prefix, saved one) where a converter renames
        self.sparsity = [0.0] * depth
        self.window_score = DEFAULT_WINDOW_SCORE
        self._layouts: dict[tuple, WindowLayout] = {}
        self.register_state_dict_post_hook(save_stage_state)
        self.register_load_state_dict_pre_hook(load_stage_state)

    @property
    def sparsity(self) -> list[float]:
        """Fraction of windows each block skips."""
        return self._sparsity

    @sparsity.setter
    def sparsity(self, values: list[float]) -> None:
        self._sparsity = list(values)
        if self.on_change is not None:
            self.on_change()

    @property
    def window_score(self) -> WindowScore:
        """How :meth:`select` ranks windows; see :data:`~sparsevit_sdk.sparse.windows.WINDOW_SCORES`."""
        return self._window_score

    @window_score.setter
    def window_score(self, measure: WindowScore) -> None:
        self._window_score = measure
        if self.on_change is not None:
            self.on_change()

    def layout(
        self, H: int, W: int, device: torch.device, windowing: Windowing | None = None
    ) -> WindowLayout:
        """Window geometry for an ``H x W`` map, built once per size, device, shift and convention."""
        windowing = windowing or self.windowing
        key = (H, W, str(device), windowing, self.shift)
        if key not in self._layouts:
            self._layouts[key] = WindowLayout.build(
                H, W, self.window_size, device, shift=self.shift, windowing=windowing
            )
        return self._layouts[key]

    def select(self, x: torch.Tensor, layout: WindowLayout) -> list[torch.Tensor | None]:
        """Kept window ids ``(B, K)`` for every block, or None where a block keeps all.

        x: padded ``(B, Hp, Wp, C)``.  Scoring is skipped when no block prunes.
        """
        nW = layout.num_windows
        keep = [kept_windows(nW, s) for s in self.sparsity]
        if all(k == nW for k in keep):
            return [None] * len(keep)
        scores = layout.window_scores(x, self.window_score)  # regular, shifted: (B, nW) each
        ranking = [top_windows(scores[p], max(keep[p::2], default=1)) for p in (0, 1)]
        return [
            None if k == nW else ranking[blk.shifted][:, :k] for k, blk in zip(keep, self.blocks)
        ]

    def run_block(
        self, index: int, x: torch.Tensor, windows: torch.Tensor | None, layout: WindowLayout
    ) -> torch.Tensor:
        """Run block ``index`` on padded ``x: (B, Hp, Wp, C)`` over ``windows``; returns the updated
        map (``x`` itself, updated in place, except in a traced or exported graph)."""
        block = self.blocks[index]
        B = x.shape[0]
        rows = layout.rows(windows, block.shifted, B)
        mask = layout.window_mask(windows, block.shifted, B)  # (B*K, N, N) or None
        valid = layout.valid_rows(rows, B, x.dtype)  # (B*K*N, 1) or None
        real = layout.real_tokens(block.shifted, B) if windows is None else None
        return block(x.view(-1, x.shape[-1]), rows, mask, valid, real).view_as(x)

    def forward_blocks(self, x: torch.Tensor, windowing: Windowing | None = None) -> torch.Tensor:
        """The blocks alone, on a merged map ``(B, H, W, C_out)``; ``windowing`` overrides the
        stage's convention for this call (Hugging Face picks it per call)."""
        check_input(x, self.blocks[0].norm1.weight)
        B, H, W, C = x.shape
        layout = self.layout(H, W, x.device, windowing)
        x = pad_to_windows(x, self.window_size)  # (B, Hp, Wp, C), a fresh buffer
        for i, windows in enumerate(self.select(x, layout)):
            x = self.run_block(i, x, windows, layout)
        return x[:, :H, :W, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C_in)`` → ``(B, H', W', C_out)``."""
        return self.forward_blocks(self.downsample(x))

    def __prepare_scriptable__(self) -> SparseSwinStage:
        """torch.jit.script's hook: refuse, naming what works instead."""
        raise TypeError("a window-sparse Swin cannot be compiled by torch.jit.script (it gathers windows chosen at "
                        "run time); use torch.compile, or export it with sparsevit_sdk.deploy.export_onnx")


