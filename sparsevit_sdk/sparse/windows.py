"""Window geometry, scoring and top-k selection for window-sparse attention.

Everything here is index bookkeeping: which tokens form which window (regular or
shifted partition of a padded grid), which windows matter most, and which rows of a
flattened ``(B * Hp * Wp, C)`` activation a block must gather and scatter back.
Rolling, partitioning and reversing are folded into one precomputed index map, so a
block touches only the tokens of the windows it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..arch import padded, padding

MASK_VALUE = -100.0  # what Swin adds to attention logits across shifted-window regions
WindowScore = Literal["norm", "deviation"]
# How a stage ranks its windows (WindowLayout.window_scores).  "norm" is SparseViT's; on the demo task it put
# 97 % of stage 1's digit tokens in pruned windows at a 1.58x pick, "deviation" none (RESULTS.md).
WINDOW_SCORES: tuple[WindowScore, ...] = ("norm", "deviation")
DEFAULT_WINDOW_SCORE: WindowScore = "norm"


def relative_position_index(window_size: int) -> torch.Tensor:
    """Index into the ``((2ws-1)^2, heads)`` bias table for every token pair: ``(N, N)``."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]  # (N, N)


def log_spaced_coords(window_size: int, pretrained_window_size: int = 0) -> torch.Tensor:
    """Swin V2's continuous position inputs: every relative offset of a window, ``(1, 2ws-1, 2ws-1, 2)``.

    Offsets are scaled to [-8, 8] by the window the model was *pretrained* with (when given),
    so a bias MLP trained at window 12 sees the same coordinates at window 16 and extrapolates
    only past them, then log-spaced: ``sign(x) * log2(1 + |x|) / 3``.
    """
    span = torch.arange(-(window_size - 1), window_size, dtype=torch.float32)
    coords = torch.stack(torch.meshgrid(span, span, indexing="ij")).permute(1, 2, 0).unsqueeze(0)
    coords = coords / max((pretrained_window_size or window_size) - 1, 1) * 8
    return torch.sign(coords) * torch.log2(coords.abs() + 1.0) / 3.0


def pad_to_windows(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Zero-pad ``x: (B, H, W, C)`` on the bottom/right to multiples of ``window_size``.

    Always returns a new tensor: the stage updates it in place.
    """
    _, H, W, _ = x.shape
    pad_h, pad_w = padding(H, window_size), padding(W, window_size)
    if pad_h or pad_w:
        return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x.clone()


def _partition_index(
    Hp: int, Wp: int, window_size: int, shift: tuple[int, int], rolled: tuple[int, int] | None = None
) -> torch.Tensor:
    """Flat grid positions of every window's tokens, ``(nW, ws*ws)``.

    The cyclic shift by ``-shift`` is a roll of the ``rolled`` top-left part of the padded
    ``Hp x Wp`` grid (the whole grid by default): window ``w`` holds grid coordinate
    ``(i, j)`` of the rolled grid, i.e. original ``((i + sh) % Hr, (j + sw) % Wr)`` inside
    that part and ``(i, j)`` outside it.  Scattering back to the same positions is the
    reverse roll.
    """
    Hr, Wr = rolled or (Hp, Wp)
    rows, cols = torch.arange(Hp), torch.arange(Wp)
    rows = torch.where(rows < Hr, (rows + shift[0]) % Hr, rows)
    cols = torch.where(cols < Wr, (cols + shift[1]) % Wr, cols)
    grid = rows[:, None] * Wp + cols[None, :]  # (Hp, Wp)
    ws = window_size
    grid = grid.view(Hp // ws, ws, Wp // ws, ws).permute(0, 2, 1, 3)  # (nWh, nWw, ws, ws)
    return grid.reshape(-1, ws * ws)


def _shift_mask(Hp: int, Wp: int, window_size: int, shift: tuple[int, int], value: float) -> torch.Tensor:
    """Additive attention mask ``(nW, N, N)`` that stops tokens from attending across the
    regions a cyclic shift glued together (0 inside a region, ``value`` across)."""

    def labels(n: int, s: int) -> torch.Tensor:
        idx = torch.arange(n)
        if s == 0:
            return torch.zeros(n, dtype=torch.long)
        return (idx >= n - window_size).long() + (idx >= n - s).long()

    region = labels(Hp, shift[0])[:, None] * 3 + labels(Wp, shift[1])[None, :]  # (Hp, Wp)
    ws = window_size
    region = region.view(Hp // ws, ws, Wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    differ = region[:, None, :] != region[:, :, None]  # (nW, N, N)
    return torch.zeros(differ.shape).masked_fill(differ, value)


NoShift = Literal["padded-side", "min-side", "never"]


@dataclass(frozen=True)
class Windowing:
    """How a Swin implementation shifts and pads its windows: one kernel, the source's convention as data.

    Libraries agree on the windows of a map that is a multiple of the window, and differ
    elsewhere; a converted model must reproduce its source exactly, so each difference is a
    setting here rather than a fork of the kernel:

    - ``roll_then_pad``: timm rolls the unpadded ``H x W`` map, then pads bottom/right;
      torchvision and Hugging Face pad first, then roll the padded map.
    - ``no_shift`` says where the shifted partition falls back to the regular one:
      ``"padded-side"`` along a side whose padded length is one window (torchvision);
      ``"min-side"`` on both sides when ``min(H, W)`` is at most one window (Hugging Face
      ``SwinModel``); ``"never"`` keeps the stage's configured shift at every size (timm,
      which fixes it when the model is built, and Hugging Face ``SwinBackbone``).

    - ``mask_value`` is what the attention logits get across rolled-together regions (the
      mask is the same function of the padded grid in all of them): -100, except Hugging
      Face Swin V2, which adds its mask twice.  It matters with cosine attention, whose
      logits reach +-100 at a trained logit scale, so a -100 mask is not a hard one.
    """

    roll_then_pad: bool = False
    no_shift: NoShift = "padded-side"
    mask_value: float = MASK_VALUE

    def __post_init__(self) -> None:
        if self.no_shift not in ("padded-side", "min-side", "never"):
            raise ValueError(f"no_shift must be 'padded-side', 'min-side' or 'never', got {self.no_shift!r}")

    def effective_shift(self, H: int, W: int, window_size: int, shift: tuple[int, int]) -> tuple[int, int]:
        """The shift the shifted blocks of an ``H x W`` map use, given the stage's configured one."""
        if self.no_shift == "min-side":
            return (0, 0) if min(H, W) <= window_size else shift
        if self.no_shift == "padded-side":
            sides = (padded(H, window_size), padded(W, window_size))
            return tuple(0 if n <= window_size else s for n, s in zip(sides, shift))
        return shift


DEFAULT_WINDOWING = Windowing()  # torchvision's convention, which the built-in models follow


@dataclass(frozen=True)
class WindowLayout:
    """Regular and shifted partitions of one padded ``Hp x Wp`` grid.

    ``shift`` is the cyclic shift the shifted partition uses (see :class:`Windowing`).
    ``valid`` marks real (unpadded) grid positions, or is ``None`` when nothing was padded;
    a padded position holds a padded token in either partition.
    """

    height: int
    width: int
    window_size: int
    shift: tuple[int, int]
    regular: torch.Tensor  # (nW, N) long
    shifted: torch.Tensor  # (nW, N) long
    shift_mask: torch.Tensor | None  # (nW, N, N) float, None without shift
    valid: torch.Tensor | None  # (Hp * Wp,) bool
    real: tuple[torch.Tensor, torch.Tensor] | None  # real-token positions in each partition's order, (R,) long

    @property
    def num_windows(self) -> int:
        return self.regular.shape[0]

    @classmethod
    def build(
        cls, H: int, W: int, window_size: int, device: torch.device | str = "cpu", *,
        shift: tuple[int, int] | None = None, windowing: Windowing = DEFAULT_WINDOWING,
    ) -> WindowLayout:
        """Layout for an unpadded ``H x W`` feature map; ``shift`` (rows, cols) defaults to half a window."""
        ws = window_size
        Hp, Wp = padded(H, ws), padded(W, ws)
        shift = windowing.effective_shift(H, W, ws, (ws // 2, ws // 2) if shift is None else tuple(shift))
        valid = None
        if (Hp, Wp) != (H, W):
            valid = torch.zeros(Hp, Wp, dtype=torch.bool)
            valid[:H, :W] = True
            valid = valid.flatten()
        has_shift = any(shift)
        regular = _partition_index(Hp, Wp, ws, (0, 0))
        shifted = _partition_index(Hp, Wp, ws, shift, (H, W) if windowing.roll_then_pad else None)
        real = None
        if valid is not None:
            real = tuple(valid[index.flatten()].nonzero().squeeze(1).to(device) for index in (regular, shifted))
            valid = valid.to(device)
        return cls(
            height=Hp,
            width=Wp,
            window_size=ws,
            shift=shift,
            regular=regular.to(device),
            shifted=shifted.to(device),
            shift_mask=_shift_mask(Hp, Wp, ws, shift, windowing.mask_value).to(device) if has_shift else None,
            valid=valid,
            real=real,
        )

    def window_scores(self, x: torch.Tensor, measure: WindowScore = "norm") -> tuple[torch.Tensor, torch.Tensor]:
        """Importance of every window for ``x: (B, Hp, Wp, C)``: ``(B, nW)`` each for the
        regular and the shifted partition.

        ``"norm"`` (SparseViT): token score is mean |x| over channels.  ``"deviation"``: the
        token's L2 distance from the image's mean token, so a token unlike most of the image
        scores high whatever the scale of its activations (after a LayerNorm every token's mean
        |x| is about the same, and background can outscore content: see :data:`WINDOW_SCORES`).
        A window's score is the L2 norm of its token scores.  Scores are fp32 whatever the dtype
        of ``x``: fp16/bf16 sums round near-ties apart or together, and a half-precision model
        would keep other windows than the fp32 one it deploys.
        """
        x = x.detach().flatten(1, 2)  # (B, Hp*Wp, C)
        if measure == "norm":
            tokens = x.abs().mean(dim=-1, dtype=torch.float32)  # (B, Hp*Wp), accumulated in fp32
        else:
            x = x.float()
            real = x if self.valid is None else x[:, self.valid]  # padded tokens neither count nor score
            tokens = (x - real.mean(dim=1, keepdim=True)).norm(dim=-1)  # (B, Hp*Wp)
            if self.valid is not None:
                tokens = tokens * self.valid
        regular = tokens[:, self.regular].norm(dim=-1)  # (B, nW)
        shifted = tokens[:, self.shifted].norm(dim=-1) if any(self.shift) else regular
        return regular, shifted

    def window_mask(self, windows: torch.Tensor | None, shifted: bool, batch: int) -> torch.Tensor | None:
        """Shift mask ``(B*K, N, N)`` of the windows a block runs on (``windows: (B, K)``, or None
        for all), or None for a regular block or a layout without shift."""
        if not shifted or self.shift_mask is None:
            return None
        mask = self.shift_mask.expand(batch, -1, -1, -1) if windows is None else self.shift_mask[windows]
        return mask.flatten(0, 1)

    def valid_rows(self, rows: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor | None:
        """``(len(rows), 1)``: 1 at real tokens and 0 at padding among ``rows`` (from :meth:`rows`),
        or None when nothing is padded."""
        if self.valid is None:
            return None
        return self.valid.repeat(batch)[rows].unsqueeze(-1).to(dtype)

    def real_tokens(self, shifted: bool, batch: int) -> torch.Tensor | None:
        """Positions of the real (unpadded) tokens in the all-windows order of :meth:`rows`
        ``(batch * nW * N,)``, or None when nothing is padded.

        Only for the dense path: its shape is fixed by the layout, so no sync is needed to
        build it; for kept windows it would depend on which windows were kept.
        """
        if self.real is None:
            return None
        real = self.real[shifted]  # (R,)
        offset = torch.arange(batch, device=real.device) * self.regular.numel()
        return (real + offset.view(batch, 1)).flatten()

    def rows(self, windows: torch.Tensor | None, shifted: bool, batch: int) -> torch.Tensor:
        """Rows of the flattened ``(B * Hp * Wp, C)`` activation covered by ``windows``.

        ``windows: (B, K)`` window ids per image, or ``None`` for all windows.
        Returns ``(B * K * N,)`` ordered image, window, token.
        """
        index = self.shifted if shifted else self.regular  # (nW, N)
        tokens = index.unsqueeze(0).expand(batch, -1, -1) if windows is None else index[windows]
        offset = torch.arange(batch, device=index.device) * (self.height * self.width)
        return (tokens + offset.view(batch, 1, 1)).flatten()


def top_windows(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Ids of the ``k`` highest-scoring windows per image, best first: ``(B, k)``.

    Sorted, so a later block of the same stage that keeps fewer windows takes a prefix.
    """
    return torch.topk(scores, k, dim=1, sorted=True).indices

