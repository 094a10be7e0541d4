"""Window-sparse Swin Transformer.

Read top to bottom in the order the data meets the code: patch embedding → stage
(patch merging, window scoring, then blocks that gather their kept windows, run
LayerNorm → window attention → MLP on them and scatter them back) → final norm → head.

Activations are NHWC, as in timm.  Each stage pads its input once to a multiple of the
window size, works on the flattened ``(B * Hp * Wp, C)`` buffer in place, and crops at
the end.  A pruned window is never read or written, so it passes through exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arch import BLOCK_KINDS, CPB_HIDDEN, format_signature, kept_windows, padding
from ..arch import check_input_shape as check_input_shape  # re-exported: callers validate shapes here
from ..config import SparsityConfig
from .guards import check_input, load_sparsity, save_sparsity
from .windows import (
    DEFAULT_WINDOWING,
    Windowing,
    WindowLayout,
    WindowScore,
    log_spaced_coords,
    pad_to_windows,
    relative_position_index,
    top_windows,
)


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


BlockKind = Literal["v1", "v2"]  # one of arch.BLOCK_KINDS
LOG_MAX_LOGIT_SCALE = math.log(100.0)  # Swin V2 clamps its learned logit scale at 100


def check_block_kind(kind: str) -> str:
    if kind not in BLOCK_KINDS:
        raise ValueError(f"block kind must be one of {BLOCK_KINDS} (Swin V1 or V2), got {kind!r}")
    return kind


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a relative-position bias.

    ``kind="v1"``: scaled dot product plus a learned bias table (Swin).  ``kind="v2"``: cosine
    attention times a learned per-head logit scale (clamped at 100), plus a *continuous* bias,
    ``16 * sigmoid(cpb_mlp(log-spaced offsets))`` (Swin V2), whose keys take no bias.
    ``fused_qkv=False`` keeps separate ``q``/``k``/``v`` projections, as Hugging Face stores
    them, so a converted model shares its source's weights instead of copying them.
    """

    def __init__(
        self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True, fused_qkv: bool = True,
        kind: BlockKind = "v1", pretrained_window_size: int = 0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.kind = check_block_kind(kind)
        v2 = kind == "v2"
        self.q_bias = self.v_bias = None
        if fused_qkv:  # V2 keeps its q and v biases apart, so the key's can stay zero
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias and not v2)
            if qkv_bias and v2:
                self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        else:
            self.q, self.k, self.v = (nn.Linear(dim, dim, bias=qkv_bias and not (v2 and i == 1)) for i in range(3))
        self.fused_qkv = fused_qkv
        self.proj = nn.Linear(dim, dim)
        if v2:
            self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
            self.cpb_mlp = nn.Sequential(
                nn.Linear(2, CPB_HIDDEN), nn.ReLU(inplace=True), nn.Linear(CPB_HIDDEN, num_heads, bias=False)
            )
            coords = log_spaced_coords(window_size, pretrained_window_size)
            self.register_buffer("relative_coords_table", coords, persistent=False)
        else:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer(
            "relative_position_index", relative_position_index(window_size), persistent=False
        )

    def relative_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias added to every window's attention logits."""
        if self.kind == "v2":
            table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        else:
            table = self.relative_position_bias_table
        # contiguous: a permuted bias makes every logit-sized sum after it strided, and slow
        bias = table[self.relative_position_index].permute(2, 0, 1).contiguous()  # (heads, N, N)
        return 16 * torch.sigmoid(bias) if self.kind == "v2" else bias

    def _qkv_bias(self) -> torch.Tensor | None:
        """The fused projection's bias: as stored (V1), or V2's q and v biases around a zero key
        bias (a fused bias of a source that stores one has its key third ignored, as there)."""
        bias = self.qkv.bias
        if self.kind == "v1":
            return bias
        if self.q_bias is not None:
            return torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        if bias is not None:
            q, _, v = bias.chunk(3)
            return torch.cat((q, torch.zeros_like(q), v))
        return None

    def forward(self, x: torch.Tensor, window_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: ``(B*K, N, C)``; window_mask: ``(B*K, N, N)`` shift mask of each window or None."""
        BK, N, C = x.shape
        if self.fused_qkv:
            qkv = F.linear(x, self.qkv.weight, self._qkv_bias()).reshape(BK, N, 3, self.num_heads, C // self.num_heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*K, heads, N, d)
        else:
            q, k, v = (p(x).view(BK, N, self.num_heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        bias = self.relative_bias().unsqueeze(0).to(q.dtype)  # (1, heads, N, N)
        mask = None if window_mask is None else window_mask.unsqueeze(1).to(q.dtype)  # (B*K, 1, N, N)
        if self.kind == "v2":
            x = self._cosine_attention(q, k, v, bias, mask)
        else:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias if mask is None else bias + mask)
        return self.proj(x.transpose(1, 2).reshape(BK, N, C))  # x: (B*K, heads, N, d)

    def _cosine_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                          mask: torch.Tensor | None) -> torch.Tensor:
        """Swin V2 attention, in the sources' order of operations: its logits reach +-100 at a
        trained scale, where fused kernels' different rounding moves outputs by ~1e-4.  The mask
        is added on its own, as they do: a bias with the mask folded in would be one more
        logit-sized tensor to write and read (a third of the attention time at window 16)."""
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logits = logits * self.logit_scale.clamp(max=LOG_MAX_LOGIT_SCALE).exp() + bias
        if mask is not None:
            logits = logits + mask
        return logits.softmax(dim=-1) @ v


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
        self.sparsity: list[float] = [0.0] * depth
        self.window_score: WindowScore = "norm"  # how select() ranks windows; see WINDOW_SCORES
        self._layouts: dict[tuple, WindowLayout] = {}
        self.register_state_dict_post_hook(save_sparsity)
        self.register_load_state_dict_pre_hook(load_sparsity)

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
    def block_sparsity(self) -> list[list[float]]:
        """Current sparsity of every block, per stage."""
        return [list(stage.sparsity) for stage in self.stages]

    def set_sparsity(self, config: SparsityConfig) -> SparseSwin:
        """Make every block skip its share of windows; validated (model, knob count, order
        along each stage unless ``config.monotonic`` is False) before anything changes."""
        per_block = config.block_sparsity(self.signature, self.depths)
        for stage, values in zip(self.stages, per_block):
            stage.sparsity = list(values)
        return self

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
