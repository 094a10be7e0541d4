"""accuracy/adapt.py: adapt and finetune, sparsity-aware, deterministic, and clear about bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sparsevit_sdk import build_model, search_space, set_sparsity
from sparsevit_sdk.accuracy import AccuracyProxy, AgreementProxy, MeanIoU, adapt, finetune
from sparsevit_sdk.demo import NUM_CLASSES, segmentation_loss
from sparsevit_sdk.profiler.timing import num_threads

from .conftest import small_loader


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two torch threads on a shared, loaded 2-core machine made this file 9x slower (measured: 490 s vs 52 s)."""
    with num_threads(1):
        yield


def test_adapt_samples_lie_in_the_space_and_vary(seg, space):
    log = adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=8, progress=False)
    configs = [step[0] for step in log.configs]
    assert all(len(step) == 1 for step in log.configs)
    for cfg in configs:
        space.validate(cfg)  # on this model, order repaired within each stage
        assert set(cfg.ratios) <= set(space.grid)
    assert len(set(configs)) > 4
    assert len(log.losses) == 8 and all(np.isfinite(log.losses))


def test_sandwich_adds_dense_and_sparsest_every_step(seg, space):
    log = adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=3, sandwich=True, progress=False)
    assert all(step[:2] == (space.dense(), space.sparsest()) and len(step) == 3 for step in log.configs)


def test_adapt_changes_weights_deterministically_and_restores_state(seg, space):
    before = copy.deepcopy(seg.state_dict())
    runs = []
    for seed in (0, 0, 1):
        model = set_sparsity(copy.deepcopy(seg), space.uniform(0.3))
        log = adapt(model, small_loader(), segmentation_loss, steps=3, seed=seed, progress=False)
        assert not model.training and model.block_sparsity == [[0.3, 0.3]] * 4
        runs.append((model.state_dict(), [c[0] for c in log.configs]))
    assert set(runs[0][0]) - set(before) == {f"backbone.stages.{i}.sparsity" for i in range(4)}  # sparse: saved
    changed = [k for k, v in before.items() if not torch.equal(v, runs[0][0][k])]
    assert len(changed) > len(before) // 2
    assert all(torch.equal(v, runs[1][0][k]) for k, v in runs[0][0].items()) and runs[0][1] == runs[1][1]
    assert runs[0][1] != runs[2][1]


def test_finetune_trains_at_one_config(seg, space):
    model = copy.deepcopy(seg)
    log = finetune(model, small_loader(), segmentation_loss, steps=2, config=space.uniform(0.2), progress=False)
    assert log.configs == [(space.uniform(0.2),)] * 2
    assert not torch.equal(model.lateral[0].weight, seg.lateral[0].weight)


def test_empty_loader_is_a_clear_error(seg):
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 3, 64, 64)))
    with pytest.raises(ValueError, match="yielded no batches"):
        adapt(copy.deepcopy(seg), empty, segmentation_loss, steps=2, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        AccuracyProxy(seg, empty, metric=MeanIoU(NUM_CLASSES))
    with pytest.raises(ValueError, match="at least one input image"):
        AgreementProxy(seg, torch.zeros(0, 3, 64, 64))
    with pytest.raises(ValueError, match="steps must be positive"):
        finetune(seg, small_loader(), segmentation_loss, steps=0)


def test_config_of_another_model_is_a_clear_error(seg):
    foreign = search_space(build_model("swin_t"))
    proxy = AgreementProxy(seg, torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"build a config from this model's search_space\(model\)"):
        proxy(foreign.uniform(0.5))
    with pytest.raises(ValueError, match="made for model"):
        adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=1, space=foreign, progress=False)
    with pytest.raises(TypeError, match="sparsify"):
        AgreementProxy(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 8, 8))


class _Pool:
    """A tiny whole model: the backbone's pooled last stage, a linear classifier."""

    def __new__(cls):
        import torch.nn as nn

        class Pool(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.backbone = build_model("swin_micro")
                self.head = nn.Linear(self.backbone.dims[-1], 4)

            def forward(self, x):
                return self.head(self.backbone(x)[-1].mean((2, 3)))
        return Pool()


@pytest.mark.parametrize(("case", "message"), [
    ("nan-images", r"the batch of step 0 holds non-finite values in input 0 .* clean the data"),
    ("huge-lr", r"parameter '.*' became non-finite or huge .* in the update before step 1 .* lower lr"),
])
def test_training_that_goes_non_finite_leaves_the_model_as_it_was(case, message):
    import torch
    import torch.nn.functional as F

    from sparsevit_sdk.accuracy import finetune

    model = _Pool()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, 64, 64)
    if case == "nan-images":
        images[0, 0, 0, 0] = float("nan")
    labels = torch.tensor([0, 1])
    lr = 1e30 if case == "huge-lr" else 1e-3
    with pytest.raises(FloatingPointError, match=message):
        finetune(model, [(images, labels)], F.cross_entropy, 3, config=search_space(model.backbone).uniform(
            0.5), lr=lr, distill=False, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # every weight as it was
    with pytest.raises(ValueError, match="lr must be a positive finite number, got inf"):
        finetune(model, [(images, labels)], F.cross_entropy, 1, lr=float("inf"), progress=False)


def test_the_log_keeps_the_task_loss_and_the_distillation_term_apart(seg, space):
    plain = finetune(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=2, config=space.uniform(0.5),
                     progress=False)
    assert plain.distill_losses == [0.0, 0.0] and plain.losses == plain.task_losses
    log = adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=3, distill=True, progress=False)
    assert all(d > 0 for d in log.distill_losses)
    assert log.losses == pytest.approx([t + d for t, d in zip(log.task_losses, log.distill_losses)])


def test_a_printed_log_names_the_config_once_then_a_row_a_step(seg, space):
    cfg = space.uniform(0.2)
    fixed = str(finetune(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=3, config=cfg, progress=False))
    lines = fixed.splitlines()
    assert len(lines) == 3 + 3 and fixed.count(cfg.signature) == 1 and fixed.count(str(cfg)) == 1
    assert lines[2].split() == ["step", "loss", "task", "distill"]
    varied = str(adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=3, progress=False))
    assert varied.count(cfg.signature) == 1 and len(varied.splitlines()) == 6
    assert "SparsityConfig" not in fixed + varied
