"""sparse/swin.py: SparseSwin forward, exactness of the sparse path, pruned-window identity, batching, gradients,
set_sparsity and state dicts; Swin V1 and V2 blocks."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import SparsityConfig, build_model, search_space, set_sparsity
from sparsevit_sdk.sparse.windows import pad_to_windows

from ..conftest import requires_cuda


def _reset(model) -> None:
    set_sparsity(model, search_space(model).dense())


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


def test_batch_images_choose_their_own_windows(micro):
    """Different images keep different windows, and batching does not change results."""
    space = search_space(micro)
    a = torch.zeros(1, 3, 112, 112)
    b = torch.zeros(1, 3, 112, 112)
    a[..., :40, :40] = torch.randn(1, 3, 40, 40) * 5
    b[..., 70:, 70:] = torch.randn(1, 3, 42, 42) * 5
    set_sparsity(micro, space.uniform(0.6))
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
    space = search_space(micro)
    with torch.inference_mode():
        dense = micro.forward_features(image)
        set_sparsity(micro, space.uniform(0.5))
        sparse = micro.forward_features(image)
        _reset(micro)
        again = micro.forward_features(image)
    assert torch.equal(dense, again)
    assert (dense - sparse).abs().max() > 1e-3


def test_gradients_flow_through_sparse_blocks(micro, micro_space):
    model = micro.train()
    set_sparsity(model, micro_space.uniform(0.5))
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
        set_sparsity(model, micro_space.uniform(0.4))
    with torch.inference_mode():
        torch.testing.assert_close(gpu.forward_features(x.cuda()).cpu(), cpu.forward_features(x),
                                   rtol=1e-3, atol=1e-3)


def test_wrong_channel_count_is_explained(micro):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        micro(torch.randn(1, 1, 64, 64))


def test_sparsity_is_saved_with_the_state_dict_and_a_dense_state_dict_is_the_sources(micro):
    timm = pytest.importorskip("timm")
    import torch

    from sparsevit_sdk import set_sparsity, sparse_backbone, sparsify

    model = build_model("swin_micro")
    set_sparsity(model, search_space(model).uniform(0.5))
    fresh = build_model("swin_micro", seed=1)
    fresh.load_state_dict(model.state_dict())
    assert fresh.block_sparsity == model.block_sparsity  # the reloaded model skips the same windows
    x = torch.randn(1, 3, 112, 112)
    torch.testing.assert_close(fresh(x)[0], model(x)[0], rtol=0, atol=0)

    def tiny():
        return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, embed_dim=32,
                                 depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    source = tiny()
    sparse = sparsify(source)
    assert set(sparse.state_dict()) == set(source.state_dict())  # dense: timm's own keys, both ways
    set_sparsity(sparse, search_space(sparse).uniform(0.3))
    saved = sparse.state_dict()
    again = sparsify(tiny())
    again.load_state_dict(saved)
    assert sparse_backbone(again).block_sparsity == [[0.3, 0.3]] * 4
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "layers.0.sparsity"'):
        tiny().load_state_dict(saved)  # a sparse checkpoint is not a dense timm one, and says so
    again.load_state_dict(source.state_dict())  # a dense checkpoint makes it dense
    assert sparse_backbone(again).block_sparsity == [[0.0, 0.0]] * 4
    saved["layers.0.sparsity"] = torch.tensor([2.0, 0.1])
    with pytest.raises(RuntimeError, match=r"layers.0.sparsity\[0\]: sparsity 2.0 is outside \[0, 1\)"):
        again.load_state_dict(saved)
    assert sparse_backbone(again).block_sparsity[0] == [0.0, 0.0]  # the refused stage is left as it was


def test_set_sparsity_refuses_decreasing_config_built_by_hand(micro):
    """Only ``space.config`` checked the order; a config built directly slipped through."""
    decreasing = (0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # stage 1's second block keeps more windows
    before = micro.block_sparsity
    with pytest.raises(ValueError, match=r"decreases within stage 1 \(\[0.5, 0.1\]\).*monotonic=False"):
        set_sparsity(micro, SparsityConfig(decreasing, micro.signature, "block"))
    assert micro.block_sparsity == before  # nothing half-applied
    free = search_space(micro, granularity="block", monotonic=False).config(decreasing)
    try:
        for cfg in (free, SparsityConfig.from_json(free.to_json()),
                    SparsityConfig(decreasing, micro.signature, "block", monotonic=False)):
            assert set_sparsity(micro, cfg).block_sparsity[0] == [0.5, 0.1]
    finally:
        set_sparsity(micro, search_space(micro).dense())
