"""Window-sparse kernels: exactness, pruned-window identity, top-k, padding, batching; Swin V1 and V2 blocks."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import SearchSpace, build_model
from sparsevit_sdk.sparse import Windowing, WindowLayout, kept_windows, set_window_score
from sparsevit_sdk.sparse.windows import pad_to_windows

from .conftest import requires_cuda


@pytest.fixture(params=["swin_micro", "swinv2_micro"])
def micro(request):
    """Every kernel property below holds for both block kinds (this overrides conftest's V1-only fixture)."""
    return build_model(request.param)


def _reset(model) -> None:
    model.set_sparsity(SearchSpace.from_model(model).dense())


def test_kept_windows_rounding_and_floor():
    assert kept_windows(10, 0.3) == 7  # 10 * 0.7 is 6.999… in floats
    assert kept_windows(576, 0.5) == 288
    assert kept_windows(1, 0.8) == 1  # never an empty stage


def test_forward_shapes_any_size(micro):  # V2's window 8 pads differently, but the maps are the same
    x = torch.randn(1, 3, 97, 130)
    with torch.inference_mode():
        outs = micro(x)
    expected = [(1, 32, 25, 33), (1, 64, 13, 17), (1, 128, 7, 9), (1, 256, 4, 5)]
    assert [tuple(o.shape) for o in outs] == expected


def test_gather_scatter_path_equals_dense_path(micro, image):
    """Selecting every window (in score order) must reproduce the dense fast path."""
    stage = micro.stages[0]
    with torch.inference_mode():
        x = micro.patch_embed(image)
        layout = stage.layout(x.shape[1], x.shape[2], x.device)
        x = pad_to_windows(x, stage.window_size)
        dense = x.clone()
        sparse = x.clone()
        every = torch.stack([torch.randperm(layout.num_windows) for _ in range(x.shape[0])])
        for i in range(len(stage.blocks)):
            stage.run_block(i, dense, None, layout)
            stage.run_block(i, sparse, every, layout)
    H, W = micro.patch_embed(image).shape[1:3]  # padding is cropped: only real tokens must agree
    torch.testing.assert_close(sparse[:, :H, :W], dense[:, :H, :W], rtol=0, atol=1e-5)


def test_pruned_windows_are_exact_identity(micro, image):
    stage = micro.stages[0]
    with torch.inference_mode():
        x = micro.patch_embed(image)
        layout = stage.layout(x.shape[1], x.shape[2], x.device)
        x = pad_to_windows(x, stage.window_size)
        windows = torch.tensor([[0, 5, 7], [1, 2, 15]])
        before = x.clone()
        for i, shifted in ((0, False), (1, True)):
            stage.run_block(i, x, windows, layout)
            touched = torch.zeros(x.shape[0] * layout.height * layout.width, dtype=torch.bool)
            touched[layout.rows(windows, shifted, x.shape[0])] = True
            flat_before, flat_after = before.view(-1, x.shape[-1]), x.view(-1, x.shape[-1])
            assert torch.equal(flat_after[~touched], flat_before[~touched])
            assert not torch.equal(flat_after[touched], flat_before[touched])
            before = x.clone()


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


def test_batch_images_choose_their_own_windows(micro):
    """Different images keep different windows, and batching does not change results."""
    space = SearchSpace.from_model(micro)
    a = torch.zeros(1, 3, 112, 112)
    b = torch.zeros(1, 3, 112, 112)
    a[..., :40, :40] = torch.randn(1, 3, 40, 40) * 5
    b[..., 70:, 70:] = torch.randn(1, 3, 42, 42) * 5
    micro.set_sparsity(space.uniform(0.6))
    try:
        stage = micro.stages[0]
        with torch.inference_mode():
            tokens = pad_to_windows(micro.patch_embed(torch.cat([a, b])), stage.window_size)
            layout = stage.layout(28, 28, tokens.device)
            chosen = stage.select(tokens, layout)[0]
            assert set(chosen[0].tolist()) != set(chosen[1].tolist())
            together = micro.forward_features(torch.cat([a, b]))
            alone = torch.cat([micro.forward_features(a), micro.forward_features(b)])
    finally:
        _reset(micro)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


def test_sparsity_changes_output_and_zero_does_not(micro, image):
    space = SearchSpace.from_model(micro)
    with torch.inference_mode():
        dense = micro.forward_features(image)
        micro.set_sparsity(space.uniform(0.5))
        sparse = micro.forward_features(image)
        _reset(micro)
        again = micro.forward_features(image)
    assert torch.equal(dense, again)
    assert (dense - sparse).abs().max() > 1e-3


def test_gradients_flow_through_sparse_blocks(micro, micro_space):
    model = micro.train()
    model.set_sparsity(micro_space.uniform(0.5))
    model.forward_features(torch.randn(2, 3, 64, 64)).square().mean().backward()
    for name, p in model.named_parameters():
        if "head" not in name:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.stages[0].blocks[1].attn.qkv.weight.grad.abs().sum() > 0


@requires_cuda
def test_cuda_matches_cpu(micro_space):
    cpu = build_model("swin_micro")
    gpu = build_model("swin_micro").cuda()
    x = torch.randn(2, 3, 112, 112)
    for model in (cpu, gpu):
        model.set_sparsity(micro_space.uniform(0.4))
    with torch.inference_mode():
        torch.testing.assert_close(gpu.forward_features(x.cuda()).cpu(), cpu.forward_features(x),
                                   rtol=1e-3, atol=1e-3)


def test_wrong_channel_count_is_explained(micro):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        micro(torch.randn(1, 1, 64, 64))


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match="swin_micro"):
        build_model("resnet50")


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
