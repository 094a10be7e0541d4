"""sparse/windows.py: window counts, layouts, shifted partitions, window scores and top-k selection."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk.arch import kept_windows
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.sparse import Windowing, WindowLayout, set_window_score
from sparsevit_sdk.sparse.windows import pad_to_windows


def test_kept_windows_rounding_and_floor():
    assert kept_windows(10, 0.3) == 7  # 10 * 0.7 is 6.999… in floats
    assert kept_windows(576, 0.5) == 288
    assert kept_windows(1, 0.8) == 1  # never an empty stage


def test_topk_picks_highest_norm_windows(micro):
    stage = micro.stages[1]
    layout = WindowLayout.build(14, 14, 7)  # 2x2 windows
    x = torch.zeros(2, 14, 14, 64)
    x[0, 7:, 7:] = 3.0  # image 0: bottom-right window (id 3) is loudest
    x[0, :7, :7] = 1.0  # then top-left (id 0)
    x[1, :7, 7:] = 2.0  # image 1: top-right window (id 1)
    x[1, 3:10, 3:10] += 5.0  # shifted window 0 (rolled by 3) covers rows/cols 3..9 exactly
    stage.sparsity = [0.5, 0.5]
    try:
        regular, shifted = stage.select(x, layout)
    finally:
        stage.sparsity = [0.0, 0.0]
    assert regular[0].tolist() == [3, 0]
    assert regular[1, 0].item() == 1
    assert shifted[1, 0].item() == 0


def test_deviation_score_ranks_the_unusual_window_first_where_norm_ranks_it_last(micro):
    """After a LayerNorm every token has about the same mean |x|: a window of sparse, peaked tokens (content)
    scores lowest by norm among the alike tokens of the background; by deviation from the mean token, first."""
    g = torch.Generator().manual_seed(0)
    background = torch.randn(64, generator=g) + 0.3 * torch.randn(1, 14, 14, 64, generator=g)  # alike, noisy
    x = torch.nn.functional.layer_norm(background, (64,))
    peaked = torch.zeros(64)
    peaked[:4] = torch.tensor([7.0, -2.0, -2.0, -3.0])
    x[0, 7:, :7] = torch.nn.functional.layer_norm(peaked, (64,))  # window 2: the same unusual token everywhere
    layout = WindowLayout.build(14, 14, 7)
    norm, _ = layout.window_scores(x)
    deviation, _ = layout.window_scores(x, "deviation")
    assert norm[0].argmin().item() == 2 and deviation[0].argmax().item() == 2
    try:
        set_window_score(micro, "deviation")
        micro.stages[1].sparsity = [0.75, 0.75]
        assert micro.stages[1].select(x, layout)[0].tolist() == [[2]]
    finally:
        micro.stages[1].sparsity = [0.0, 0.0]
        set_window_score(micro, "norm")
    assert {s.window_score for s in micro.stages} == {"norm"}
    with pytest.raises(ValueError, match="unknown window score 'l1'; choose one of norm, deviation"):
        set_window_score(micro, "l1")


def test_deviation_score_ignores_padded_tokens():
    layout = WindowLayout.build(10, 10, 7)  # padded to 14x14
    x = pad_to_windows(torch.randn(1, 10, 10, 8, generator=torch.Generator().manual_seed(1)), 7)
    padded_only = x.clone()
    padded_only[0, 10:, :] = 0.0
    regular, _ = layout.window_scores(x, "deviation")
    tokens = torch.zeros(14, 14)
    real = x[0, :10, :10]
    tokens[:10, :10] = (real - real.mean((0, 1))).norm(dim=-1)
    torch.testing.assert_close(regular[0], tokens.flatten()[layout.regular].norm(dim=-1))


@pytest.mark.parametrize("roll_then_pad", [False, True], ids=["pad-then-roll", "roll-then-pad"])
@pytest.mark.parametrize("H, W, shift", [(9, 13, (3, 3)), (14, 7, (3, 0)), (5, 12, (3, 3))])
def test_shifted_partition_is_the_roll_and_pad_it_names(H, W, shift, roll_then_pad):
    """Each window of the shifted partition holds the tokens torch.roll + F.pad put there (-1: padding)."""
    ws = 7
    ids = torch.arange(H * W, dtype=torch.float32).view(1, H, W, 1)
    pad = (0, 0, 0, (-W) % ws, 0, (-H) % ws)
    if roll_then_pad:
        grid = torch.nn.functional.pad(torch.roll(ids, (-shift[0], -shift[1]), (1, 2)), pad, value=-1)
    else:
        grid = torch.roll(torch.nn.functional.pad(ids, pad, value=-1), (-shift[0], -shift[1]), (1, 2))
    Hp, Wp = grid.shape[1:3]
    expected = grid.view(Hp // ws, ws, Wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws).long()
    layout = WindowLayout.build(H, W, ws, shift=shift, windowing=Windowing(roll_then_pad, "never"))
    i, j = layout.shifted // Wp, layout.shifted % Wp  # grid positions the kernel gathers
    got = torch.where((i < H) & (j < W), i * W + j, -1)
    assert torch.equal(got, expected)


def test_windowing_rules_drop_the_shift_where_each_library_does():
    tv, hf, timm_like = Windowing(), Windowing(no_shift="min-side"), Windowing(True, "never")
    assert tv.effective_shift(7, 20, 7, (3, 3)) == (0, 3)  # one window tall: no shift along H only
    assert hf.effective_shift(7, 20, 7, (3, 3)) == (0, 0)  # shorter side is one window: no shift at all
    assert hf.effective_shift(8, 20, 7, (3, 3)) == (3, 3)
    assert timm_like.effective_shift(5, 5, 7, (3, 3)) == (3, 3)  # timm keeps the shift fixed at build time
    with pytest.raises(ValueError, match="no_shift"):
        Windowing(no_shift="sometimes")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_window_scores_are_fp32_whatever_the_activation_dtype(dtype):
    """Two windows whose scores differ by less than a half-precision step: scored in half
    precision they tie, so the lower id wins; in fp32 the higher score does, as in fp32."""
    layout = WindowLayout.build(8, 8, 4)
    x = torch.ones(1, 8, 8, 16)
    x[0, 4, 4] = 1 + torch.finfo(dtype).eps  # a token of window 3, exactly representable in ``dtype``
    regular, shifted = layout.window_scores(x.to(dtype))
    assert regular.dtype == shifted.dtype == torch.float32
    torch.testing.assert_close(regular, layout.window_scores(x.to(dtype).float())[0], rtol=0, atol=0)
    assert regular[0, 3] > regular[0, 0]
