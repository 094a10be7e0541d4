"""Distillation from the dense model, the per-step hook for any loop, and the Hugging Face Trainer path."""

from __future__ import annotations

import copy
import itertools
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsevit_sdk import search_space, set_sparsity, sparsify
from sparsevit_sdk.accuracy import Distillation, SparsityAdapter, adapt, distillation_loss, finetune
from sparsevit_sdk.accuracy.distill import shared_tensors
from sparsevit_sdk.demo import build_demo_model, demo_loader, segmentation_loss
from sparsevit_sdk.profiler.timing import num_threads

from ..sparse.test_convert import _randomize

SMALL = dict(size=64, cell=32, digit_px=(16, 24), digits_per_image=(1, 2))


def small_loader(num_images: int = 8):
    return demo_loader("train", num_images, batch_size=4, **SMALL)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with num_threads(1):
        yield


@pytest.fixture()
def seg():
    return build_demo_model("swin_micro", seed=0)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _hf_output(**fields):
    return pytest.importorskip("transformers").utils.ModelOutput(**fields)


KINDS = {
    "class logits": lambda s: _randn(4, 10, seed=s),
    "segmentation logits": lambda s: _randn(2, 5, 8, 8, seed=s),
    "feature maps": lambda s: [_randn(2, 8, 8, 8, seed=s), 100 * _randn(2, 16, 4, 4, seed=s + 50)],
    "HF logits": lambda s: _hf_output(logits=_randn(2, 7, seed=s)),
    "HF feature_maps": lambda s: _hf_output(feature_maps=(_randn(2, 8, 4, 4, seed=s), _randn(2, 16, 2, 2, seed=s + 9))),
    "HF last_hidden_state": lambda s: _hf_output(last_hidden_state=_randn(2, 49, 32, seed=s)),
    "Mask2Former queries": lambda s: _hf_output(class_queries_logits=_randn(2, 8, 4, seed=s),
                                                masks_queries_logits=_randn(2, 8, 16, 16, seed=s + 1)),
}


def _requires_grad(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.clone().requires_grad_()
    if isinstance(outputs, list):
        return [_requires_grad(o) for o in outputs]
    return type(outputs)(**{k: _requires_grad(v) if isinstance(v, torch.Tensor) else tuple(map(_requires_grad, v))
                            for k, v in outputs.items()})


def _leaves(outputs) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    values = outputs.values() if isinstance(outputs, dict) else outputs
    return [t for v in values for t in _leaves(v)]


@pytest.mark.parametrize("kind", KINDS)
def test_distillation_is_zero_at_agreement_and_pulls_the_student_to_the_teacher(kind):
    teacher, student = KINDS[kind](0), _requires_grad(KINDS[kind](1))
    assert float(distillation_loss(KINDS[kind](0), teacher)) == pytest.approx(0.0, abs=1e-6)
    loss = distillation_loss(student, teacher, temperature=2.0)
    assert loss > 0
    loss.backward()
    with torch.no_grad():  # one small step along the gradient lowers the term: it points to the teacher
        stepped = [s - 1e-3 * s.grad / s.grad.norm() for s in _leaves(student)]
        it = iter(stepped)
        moved = type(student)(**{k: next(it) if isinstance(v, torch.Tensor) else tuple(next(it) for _ in v)
                                 for k, v in student.items()}) if isinstance(student, dict) else (
            next(it) if isinstance(student, torch.Tensor) else [next(it) for _ in student])
    assert distillation_loss(moved, teacher, temperature=2.0) < loss


def test_losses_are_the_textbook_formulas():
    s, t = _randn(3, 6, 5, 5, seed=1), _randn(3, 6, 5, 5, seed=2)
    T = 3.0
    p, log_q = F.softmax(t / T, 1), F.log_softmax(s / T, 1)
    expected = (p * (p.log() - log_q)).sum(1).mean() * T**2  # per-pixel KL, averaged over pixels
    torch.testing.assert_close(distillation_loss(s, t, temperature=T), expected)
    maps = [_randn(2, 4, 3, 3, seed=3), _randn(2, 8, 2, 2, seed=4)]
    targets = [1000 * _randn(2, 4, 3, 3, seed=5), _randn(2, 8, 2, 2, seed=6)]
    nmse = [((a - b).flatten(1).square().sum(1) / b.flatten(1).square().sum(1)).mean() for a, b in zip(maps, targets)]
    torch.testing.assert_close(distillation_loss(maps, targets), torch.stack(nmse).mean())  # scale-free per map
    ms, mt = _randn(2, 3, 4, 4, seed=7), _randn(2, 3, 4, 4, seed=8)
    ps, pt = torch.sigmoid(ms), torch.sigmoid(mt)
    bernoulli = (pt * (pt / ps).log() + (1 - pt) * ((1 - pt) / (1 - ps)).log()).mean()
    out = _hf_output(masks_queries_logits=ms)
    torch.testing.assert_close(distillation_loss(out, _hf_output(masks_queries_logits=mt)), bernoulli)


@pytest.mark.parametrize("student, teacher, match", [
    (_randn(2, 5), _randn(2, 6), r"the output: student tensor \(2, 5\), teacher tensor \(2, 6\)"),
    ([_randn(2, 3, 4, 4)] * 2, [_randn(2, 3, 4, 4)], "the output: student list of 2, teacher list of 1"),
    (_randn(2, 5), [_randn(2, 5)], "the output: student tensor .* teacher list"),
])
def test_outputs_of_different_structure_are_refused(student, teacher, match):
    with pytest.raises(ValueError, match="differ in structure at " + match):
        distillation_loss(student, teacher)


def test_hf_outputs_of_different_structure_and_without_known_fields_are_refused():
    with pytest.raises(ValueError, match="'logits'.*teacher NoneType"):
        distillation_loss(_hf_output(logits=_randn(2, 3)), _hf_output(last_hidden_state=_randn(2, 3, 4)))
    with pytest.raises(TypeError, match=r"no output to distill .*keys \['pooled'\].*logits, class_queries_logits"):
        distillation_loss(_hf_output(pooled=_randn(2, 3)), _hf_output(pooled=_randn(2, 3)))


@pytest.mark.parametrize("value, match", [
    ("yes", "distill must be True/False, a weight"), (0.0, "weight must be a finite number > 0"),
    (float("nan"), "weight must be a finite number > 0"), (Distillation(temperature=1.0), None),
])
def test_distill_keyword_forms(value, match):
    if match is None:
        assert Distillation.coerce(value) is value
        return
    with pytest.raises((TypeError, ValueError), match=match):
        Distillation.coerce(value)
    assert Distillation.coerce(True) == Distillation() and Distillation.coerce(0.5).weight == 0.5
    assert Distillation.coerce(False) is None and Distillation.coerce(None) is None
    assert Distillation.coerce(True, "frozen").teacher == "frozen" == Distillation.coerce(2.0, "frozen").teacher
    with pytest.raises(TypeError, match="teacher must be 'in-place' or 'frozen' or an nn.Module, got 'copy'"):
        Distillation(teacher="copy")


@pytest.mark.parametrize("setting, values, accepted", [
    ("weight", [-1.0, 0.0, float("nan"), float("inf"), True, "1"], r"weight must be a finite number > 0, got "),
    ("temperature", [0.0, -2.0, 1e-30, float("nan"), float("inf"), 1e6, True],
     r"temperature must be a number in \[0.1, 100.0\], got "),
])
def test_degenerate_settings_are_refused_naming_the_accepted_range(setting, values, accepted):
    for value in values:
        with pytest.raises(ValueError, match=accepted + repr(value).replace("(", r"\(")):
            Distillation(**{setting: value})
    s, t = _randn(4, 10, seed=1), _randn(4, 10, seed=2)
    for temperature in (0.1, 100.0):  # the ends of the range still give a term, and a gradient
        assert distillation_loss(s, t, temperature) > 1e-4
        assert Distillation(weight=1e-3, temperature=temperature).temperature == temperature


@pytest.mark.parametrize("output", [_randn(4), _randn(4, 1), _randn(4, 49, 32), _hf_output(logits=_randn(4, 1))])
def test_outputs_without_class_logits_are_refused_naming_the_shape(output):
    """A (B,) or (B, 1) output has a constant softmax (a term of 0), a 3-D one no known class dim."""
    shape = ", ".join(map(str, (output["logits"] if isinstance(output, dict) else output).shape))
    with pytest.raises(ValueError, match=rf"cannot distill an output of shape \({shape},?\): distillation reads "
                                         r"class logits \(B, K\).*pass distill=None and add your own"):
        distillation_loss(output, output)


def test_distillation_alone_brings_a_sparse_config_to_the_dense_outputs(seg):
    """With the label loss off, fine-tuning a sparse config moves its outputs to the dense ones."""
    cfg = search_space(seg).uniform(0.6)
    x = next(iter(small_loader()))[0]
    dense_out = seg(x).detach()

    def gap() -> float:
        with torch.no_grad():
            set_sparsity(seg, cfg)
            try:
                return float(distillation_loss(seg(x), dense_out))
            finally:
                set_sparsity(seg, search_space(seg).dense())

    before = gap()
    log = finetune(seg, itertools.repeat((x, None)), lambda out, _: out.sum() * 0, steps=20, config=cfg, lr=2e-4,
                   weight_decay=0.0, distill=True, progress=False)  # a frozen teacher: the in-place one drifts
    assert all(c == (cfg,) for c in log.configs) and log.losses[0] == pytest.approx(before, rel=1e-4)
    assert gap() < 0.7 * before
    assert seg.block_sparsity == [[0.0, 0.0]] * 4 and not seg.training


def test_adapt_with_distillation_adds_the_term_and_stays_deterministic(seg):
    runs = [adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=3, distill=d, progress=False)
            for d in (True, True, None)]
    assert runs[0].losses == runs[1].losses  # deterministic under the seed
    assert [c for c in runs[0].configs] == [c for c in runs[2].configs]  # same configs drawn
    assert all(a > b for a, b in zip(runs[0].losses[1:], runs[2].losses[1:]))  # labels + a positive term


def test_sandwich_dense_run_is_the_in_place_teacher(seg, monkeypatch):
    calls = []
    original = SparsityAdapter.teacher_outputs
    monkeypatch.setattr(SparsityAdapter, "teacher_outputs", lambda self, *a, **k: calls.append(1) or original(
        self, *a, **k))
    adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=2, sandwich=True, distill=True, progress=False)
    assert calls == []  # no extra forward: the dense run of the step gave the targets
    adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=2, distill=True, progress=False)
    assert len(calls) == 2  # one no-grad dense forward per step without the sandwich


def test_distill_on_a_model_without_a_swin_is_refused():
    with pytest.raises(TypeError, match=r"holds no window-sparse Swin; call sparsevit_sdk.sparsify\(model\)"):
        adapt(nn.Conv2d(3, 11, 1), small_loader(), segmentation_loss, steps=1, distill=True)


def test_finetune_dense_with_distillation_is_refused(seg):
    with pytest.raises(ValueError, match="learn its own dense outputs; pass config="):
        finetune(seg, small_loader(), segmentation_loss, steps=1, distill=True)


def test_frozen_teacher_is_the_model_at_sparsity_0_as_it_was(seg, monkeypatch):
    space = search_space(seg)
    x = next(iter(small_loader()))[0]
    set_sparsity(seg, space.uniform(0.4))
    adapter = SparsityAdapter(seg, distill=True, teacher="frozen")
    set_sparsity(seg, space.dense())
    expected = seg(x)
    assert adapter.teacher is not seg and not any(p.requires_grad for p in adapter.teacher.parameters())
    with torch.no_grad():
        for p in seg.parameters():
            p.mul_(0.5)  # training moves the student; the frozen teacher stays
    torch.testing.assert_close(adapter.teacher_outputs(x), expected, rtol=0, atol=1e-5)
    assert SparsityAdapter(seg, distill=True).teacher is None  # in place by default
    built = []  # finetune's default teacher is the frozen one
    monkeypatch.setattr(SparsityAdapter, "_teacher", lambda self: built.append(self.distill.teacher))
    finetune(seg, small_loader(), segmentation_loss, 1, config=space.uniform(0.4), distill=0.5, progress=False)
    assert built == ["frozen"]


def test_frozen_teacher_of_another_structure_is_refused(seg):
    teacher = nn.Sequential(nn.Conv2d(3, 4, 1))  # 4 classes, the student has 11
    with pytest.raises(ValueError, match=r"differ in structure at the output.*\(4, 11, 64, 64\).*\(4, 4, 64, 64\)"):
        adapt(copy.deepcopy(seg), small_loader(), segmentation_loss, steps=1, distill=Distillation(teacher=teacher),
              progress=False)


@pytest.mark.parametrize("fail", ["interrupt", "error"])
def test_interrupted_adapt_leaves_sparsity_and_mode_as_they_were(seg, fail):
    space = search_space(seg)
    set_sparsity(seg, space.uniform(0.3)).eval()
    before = seg.block_sparsity

    def batches():
        yield from itertools.islice(small_loader(), 1)
        raise KeyboardInterrupt if fail == "interrupt" else RuntimeError("disk gone")

    with pytest.raises(KeyboardInterrupt if fail == "interrupt" else RuntimeError):
        adapt(seg, batches(), segmentation_loss, steps=5, distill=True, progress=False)
    assert seg.block_sparsity == before and not seg.training


def test_plain_loop_with_the_hook_trains_at_fresh_configs_with_distillation(seg):
    set_sparsity(seg, search_space(seg).uniform(0.1)).train()
    before = seg.block_sparsity
    opt = torch.optim.AdamW(seg.parameters(), lr=1e-3)
    seen = []
    with SparsityAdapter(seg, distill=True, seed=3) as adapter:
        for images, masks in itertools.islice(itertools.cycle(small_loader()), 4):
            seen.append(adapter.step())
            assert seg.block_sparsity == seen[-1].block_sparsity(seg.signature, seg.depths)
            out = seg(images)
            term = adapter.distillation(out, images)
            assert seg.block_sparsity == seen[-1].block_sparsity(seg.signature, seg.depths)  # teacher ran dense
            (segmentation_loss(out, masks) + term).backward()
            opt.step()
            opt.zero_grad()
    assert len(set(seen)) == 4 and seg.block_sparsity == before
    again = SparsityAdapter(seg, seed=3)
    assert [again.draw() for _ in range(4)] == seen  # the same draws under the same seed
    with pytest.raises(RuntimeError, match="built without distill; pass distill=True"):
        again.distillation(out, images)


def test_hook_on_a_model_never_sparsified_is_refused():
    with pytest.raises(TypeError, match=r"Sequential holds no window-sparse Swin; call sparsevit_sdk.sparsify"):
        SparsityAdapter(nn.Sequential(nn.Conv2d(3, 3, 1)))


def _hf_swin_config(**kwargs):
    transformers = pytest.importorskip("transformers")
    return transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2], num_heads=[1, 2, 2],
                                   window_size=4, **kwargs)


def _hf_classifier() -> tuple[nn.Module, nn.Module]:
    """A tiny Hugging Face Swin classifier and ``sparsify`` of it: the student shares every weight with it."""
    transformers = pytest.importorskip("transformers")
    config = _hf_swin_config(num_labels=5, drop_path_rate=0.0)
    original = _randomize(transformers.SwinForImageClassification(config))
    return original, sparsify(original)


def test_teacher_sharing_the_students_weights_is_a_frozen_copy_whose_outputs_never_change(caplog):
    original, student = _hf_classifier()
    x, labels = _randn(2, 3, 64, 64), torch.tensor([1, 3])
    expected = original.eval()(pixel_values=x).logits.detach()
    student.train()
    with caplog.at_level("INFO", logger="sparsevit_sdk.accuracy.distill"):
        adapter = SparsityAdapter(student, distill=Distillation(teacher=original))
    assert re.search(r"shares \d+ tensors with the student \(first 'swin.embeddings.*frozen copy", caplog.text)
    assert shared_tensors(adapter.teacher, student) == [] and not adapter.teacher.training
    assert len(shared_tensors(original, student)) == len(list(student.parameters()))  # sparsify shares every weight
    before = adapter.teacher_outputs(pixel_values=x).logits
    torch.testing.assert_close(before, expected, rtol=0, atol=1e-5)  # the original, as it was
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    for _ in range(3):
        adapter.step()
        out = student(pixel_values=x, labels=labels)
        (out.loss + adapter.distillation(out, pixel_values=x)).backward()
        opt.step()
        opt.zero_grad()
        assert torch.equal(adapter.teacher_outputs(pixel_values=x).logits, before)
    assert not torch.allclose(original(pixel_values=x).logits, expected)  # the original trained with the student


def test_the_student_as_its_own_teacher_is_refused(seg):
    seg.train()
    with pytest.raises(ValueError, match="teacher is the student itself: its term would be ~0.*teacher='in-place'"):
        SparsityAdapter(seg, distill=Distillation(teacher=seg))
    assert seg.training


@pytest.mark.parametrize("teacher", ["in-place", "frozen", "the original", "a copy"])
def test_the_students_mode_is_the_loops_after_every_distillation_step(teacher):
    original, student = _hf_classifier()
    teacher = {"the original": original, "a copy": copy.deepcopy(original)}.get(teacher, teacher)
    adapter = SparsityAdapter(student.train(), distill=Distillation(teacher=teacher))  # set once, before the loop
    x = _randn(2, 3, 64, 64)
    for step in range(4):
        if step == 2:
            student.eval()  # then the loop switches to eval mode
        adapter.step()
        adapter.distillation(student(pixel_values=x), pixel_values=x)
        assert {m.training for m in student.modules()} == {step < 2}


def _mask2former():
    transformers = pytest.importorskip("transformers")
    backbone = _hf_swin_config(out_features=["stage1", "stage2", "stage3"])
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone, hidden_dim=32, mask_feature_size=32, feature_size=32, encoder_layers=1,
        decoder_layers=2, num_queries=4, num_labels=3, encoder_feedforward_dim=32, dim_feedforward=32,
        num_attention_heads=2, feature_strides=[4, 8, 16], train_num_points=64,
    )
    return sparsify(_randomize(transformers.Mask2FormerForUniversalSegmentation(config)), inplace=True)


def _mask_batch(n: int = 2, size: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    masks = [(torch.rand(2, size, size, generator=g) > 0.5).float() for _ in range(n)]
    return {"pixel_values": torch.randn(n, 3, size, size, generator=g), "mask_labels": masks,
            "class_labels": [torch.tensor([0, 2]) for _ in range(n)]}


def test_plain_loop_with_mask2former_computing_its_own_loss():
    model = _mask2former().train()
    adapter = SparsityAdapter(model, distill=True)
    batch = _mask_batch()
    adapter.step()
    out = model(**batch)
    term = adapter.distillation(out, pixel_values=batch["pixel_values"])
    assert torch.isfinite(out.loss) and term > 0
    (out.loss + term).backward()
    grads = [p.grad for p in adapter.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    adapter.restore()
    # adapt() runs the same model from dict batches, scored by its own loss
    log = adapt(model, [batch], None, steps=2, distill=True, progress=False)
    assert len(log.losses) == 2 and all(map(torch.isfinite, map(torch.tensor, log.losses)))


def test_adapt_without_loss_fn_needs_a_model_that_computes_one(seg):
    with pytest.raises(ValueError, match="loss_fn is None but the model returned no loss"):
        adapt(seg, [{"x": torch.randn(2, 3, 64, 64)}], None, steps=1, progress=False)


def test_search_result_finetunes_its_best_config_distilled(seg):
    from sparsevit_sdk import SearchResult, SearchSession

    result = SearchSession(seg, "cpu", latency_budget=0.9, input_shape=(1, 3, 64, 64), population=4, parents=2,
                           generations=1, progress=False).run()
    assert result.best != search_space(seg).dense()  # dense is over budget
    before = {k: v.clone() for k, v in seg.state_dict().items()}
    log = result.finetune(small_loader(), segmentation_loss, 2, lr=1e-4, progress=False)
    assert log.configs == [(result.best,)] * 2
    assert any(not torch.equal(v, seg.state_dict()[k]) for k, v in before.items())
    assert seg.block_sparsity == [[0.0, 0.0]] * 4 and not seg.training
    with pytest.raises(ValueError, match="no model attached .*pass model="):
        SearchResult.from_dict(result.to_dict()).finetune(small_loader(), segmentation_loss, 1)
