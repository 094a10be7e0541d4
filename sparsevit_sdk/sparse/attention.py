"""Window attention of Swin V1 and V2: what runs on each kept window's tokens.

V1 (Swin) is scaled dot-product attention plus a learned relative-position bias table; V2
(Swin V2) is cosine attention with a learned, clamped logit scale and a continuous position
bias from a small MLP.  Both read the same relative-position index (``windows.py``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arch import BLOCK_KINDS, CPB_HIDDEN
from .windows import log_spaced_coords, relative_position_index

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
        N = self.window_size**2
        # the index is (N, N), or (N*N,) where a converted model adopted its source's (torchvision's)
        bias = table[self.relative_position_index].view(N, N, -1).permute(2, 0, 1).contiguous()  # (heads, N, N)
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


