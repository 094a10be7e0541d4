"""Window geometry, scoring and top-k selection for window-sparse attention.

Everything here is index bookkeeping: which tokens form which window (regular or
shifted partition of a padded grid), which windows matter most, and which rows of a
flattened ``(B * Hp * Wp, C)`` activation a block must gather and scatter back.
Rolling, partitioning and reversing are folded into one precomputed index map, so a
block touches only the tokens of the windows it keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MASK_VALUE = -100.0  # what Swin adds to attention logits across shifted-window regions


def kept_windows(num_windows: int, sparsity: float) -> int:
    """Windows kept per image at ``sparsity``: ``int(nW * (1 - s))``, at least one.

    A tiny epsilon absorbs float error (``10 * (1 - 0.3)`` is 6.999…); the floor of one
    keeps a stage from degenerating to the identity at low resolution.
    """
    return max(1, int(math.floor(num_windows * (1.0 - sparsity) + 1e-6)))


def pad_to_windows(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Zero-pad ``x: (B, H, W, C)`` on the bottom/right to multiples of ``window_size``.

    Always returns a new tensor: the stage updates it in place.
    """
    _, H, W, _ = x.shape
    pad_h, pad_w = (-H) % window_size, (-W) % window_size
    if pad_h or pad_w:
        return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x.clone()


def _partition_index(Hp: int, Wp: int, window_size: int, shift: tuple[int, int]) -> torch.Tensor:
    """Flat grid positions of every window's tokens, ``(nW, ws*ws)``.

    Window ``w`` of the grid rolled by ``-shift`` holds rolled coordinate ``(i, j)``,
    i.e. original coordinate ``((i + sh) % Hp, (j + sw) % Wp)``; scattering back to the
    same positions is the reverse roll.
    """
    ws = window_size
    rows = (torch.arange(Hp) + shift[0]) % Hp
    cols = (torch.arange(Wp) + shift[1]) % Wp
    grid = rows[:, None] * Wp + cols[None, :]  # (Hp, Wp)
    grid = grid.view(Hp // ws, ws, Wp // ws, ws).permute(0, 2, 1, 3)  # (nWh, nWw, ws, ws)
    return grid.reshape(-1, ws * ws)


def _shift_mask(Hp: int, Wp: int, window_size: int, shift: tuple[int, int]) -> torch.Tensor:
    """Additive attention mask ``(nW, N, N)`` that stops tokens from attending across the
    regions a cyclic shift glued together (0 inside a region, -100 across)."""

    def labels(n: int, s: int) -> torch.Tensor:
        idx = torch.arange(n)
        if s == 0:
            return torch.zeros(n, dtype=torch.long)
        return (idx >= n - window_size).long() + (idx >= n - s).long()

    region = labels(Hp, shift[0])[:, None] * 3 + labels(Wp, shift[1])[None, :]  # (Hp, Wp)
    ws = window_size
    region = region.view(Hp // ws, ws, Wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    differ = region[:, None, :] != region[:, :, None]  # (nW, N, N)
    return torch.zeros(differ.shape).masked_fill(differ, MASK_VALUE)


@dataclass(frozen=True)
class WindowLayout:
    """Regular and shifted partitions of one padded ``Hp x Wp`` grid.

    ``shift`` is ``window_size // 2`` per dimension, or 0 along a dimension that holds a
    single window (as in torchvision and timm).  ``valid`` marks real (unpadded) tokens,
    or is ``None`` when nothing was padded.
    """

    height: int
    width: int
    window_size: int
    shift: tuple[int, int]
    regular: torch.Tensor  # (nW, N) long
    shifted: torch.Tensor  # (nW, N) long
    shift_mask: torch.Tensor | None  # (nW, N, N) float, None without shift
    valid: torch.Tensor | None  # (Hp * Wp,) bool

    @property
    def num_windows(self) -> int:
        return self.regular.shape[0]

    @classmethod
    def build(
        cls, H: int, W: int, window_size: int, device: torch.device | str = "cpu"
    ) -> WindowLayout:
        """Layout for an unpadded ``H x W`` feature map."""
        ws = window_size
        Hp, Wp = H + (-H) % ws, W + (-W) % ws
        half = ws // 2
        shift = (half if Hp > ws else 0, half if Wp > ws else 0)
        valid = None
        if (Hp, Wp) != (H, W):
            valid = torch.zeros(Hp, Wp, dtype=torch.bool)
            valid[:H, :W] = True
            valid = valid.flatten().to(device)
        has_shift = any(shift)
        return cls(
            height=Hp,
            width=Wp,
            window_size=ws,
            shift=shift,
            regular=_partition_index(Hp, Wp, ws, (0, 0)).to(device),
            shifted=_partition_index(Hp, Wp, ws, shift).to(device),
            shift_mask=_shift_mask(Hp, Wp, ws, shift).to(device) if has_shift else None,
            valid=valid,
        )

    def window_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Importance of every window for ``x: (B, Hp, Wp, C)``: ``(B, nW)`` each for the
        regular and the shifted partition.

        Token score is mean |x| over channels; a window's score is the L2 norm of its
        token scores (SparseViT).  Padded tokens are zero and score zero.
        """
        tokens = x.detach().abs().mean(dim=-1).flatten(1)  # (B, Hp*Wp)
        regular = tokens[:, self.regular].norm(dim=-1)  # (B, nW)
        shifted = tokens[:, self.shifted].norm(dim=-1) if any(self.shift) else regular
        return regular, shifted

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

