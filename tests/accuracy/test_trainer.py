"""accuracy/trainer.py: SparsityTrainer and SparsityCallback on Hugging Face models."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import sparsify
from sparsevit_sdk.profiler.timing import num_threads

from ..sparse.test_convert import _randomize
from .test_distill import _hf_classifier, _hf_swin_config, _mask2former, _mask_batch, _randn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with num_threads(1):
        yield


def _args(tmp_path, **kwargs):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    settings = dict(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3,
                    use_cpu=True, report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
                    seed=0, remove_unused_columns=False)
    return transformers.TrainingArguments(**{**settings, **kwargs})


class _Images(torch.utils.data.Dataset):
    """Dict items, as Hugging Face datasets give them."""

    def __init__(self, n: int, labels: bool = True) -> None:
        self.items = [{"pixel_values": _randn(3, 64, 64, seed=i), **({"labels": torch.tensor(i % 5)} if labels else {})}
                      for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_trainer_adapts_an_hf_classifier_with_distillation(tmp_path):
    transformers = pytest.importorskip("transformers")
    from sparsevit_sdk.accuracy.trainer import SparsityTrainer

    model = sparsify(_randomize(transformers.SwinForImageClassification(_hf_swin_config(num_labels=5))))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = SparsityTrainer(model=model, args=_args(tmp_path, logging_strategy="steps", logging_steps=1),
                              train_dataset=_Images(6), distill=True)
    drawn = []
    trainer.add_callback(type("Spy", (transformers.TrainerCallback,), {  # the config in force at each update
        "on_pre_optimizer_step": lambda self, *a, **k: drawn.append(trainer.adapter.config)}))
    trainer.train()
    assert trainer.state.global_step == 3
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]  # the loss and its two parts
    assert len(logged) == 3 and all(e["distill_loss"] > 0 for e in logged)
    assert all(e["loss"] == pytest.approx(e["task_loss"] + e["distill_loss"]) for e in logged)
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert len(drawn) == 3 and None not in drawn and len(set(drawn)) == 3  # a fresh config every step
    assert trainer.adapter.backbone.block_sparsity == [[0.0, 0.0]] * 3  # restored after training

    batch = {"pixel_values": _randn(2, 3, 64, 64), "labels": torch.tensor([1, 3])}
    model.train()
    trainer.adapter.step()
    with_term = trainer.compute_loss(model, dict(batch))
    plain = transformers.Trainer.compute_loss(trainer, model, dict(batch))
    term = trainer.adapter.distillation(model(pixel_values=batch["pixel_values"]), pixel_values=batch["pixel_values"])
    torch.testing.assert_close(with_term, plain + term)
    assert term > 0


def test_interrupted_trainer_puts_the_sparsity_back(tmp_path):
    transformers = pytest.importorskip("transformers")
    from sparsevit_sdk.accuracy.trainer import SparsityTrainer

    model = sparsify(_randomize(transformers.SwinForImageClassification(_hf_swin_config(num_labels=5))))
    trainer = SparsityTrainer(model=model, args=_args(tmp_path), train_dataset=_Images(6))

    class Stop(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, *args, **kwargs):
            assert trainer.adapter.backbone.block_sparsity != [[0.0, 0.0]] * 3  # mid-step: a sparse config
            raise KeyboardInterrupt

    trainer.add_callback(Stop())
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.adapter.backbone.block_sparsity == [[0.0, 0.0]] * 3


def test_trainer_with_a_model_computed_loss_mask2former(tmp_path):
    from sparsevit_sdk.accuracy.trainer import SparsityTrainer

    model = _mask2former()
    data = [_mask_batch(1, seed=i) for i in range(4)]
    items = [{k: v[0] for k, v in d.items()} for d in data]

    def collate(features):
        return {"pixel_values": torch.stack([f["pixel_values"] for f in features]),
                "mask_labels": [f["mask_labels"] for f in features],
                "class_labels": [f["class_labels"] for f in features]}

    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = SparsityTrainer(model=model, args=_args(tmp_path), train_dataset=items, data_collator=collate)
    assert sorted(trainer.label_names) == ["class_labels", "mask_labels"]
    trainer.train()
    assert trainer.state.global_step == 3
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_trainer_without_a_loss_is_refused(tmp_path, seg):
    from sparsevit_sdk.accuracy.trainer import SparsityTrainer

    with pytest.raises(ValueError, match=r"DemoSegmenter computes no loss .*pass compute_loss_func="):
        SparsityTrainer(model=seg, args=_args(tmp_path), train_dataset=_Images(2, labels=False))


def test_callback_on_a_model_never_sparsified_is_refused():
    transformers = pytest.importorskip("transformers")
    from sparsevit_sdk.accuracy.trainer import SparsityCallback

    with pytest.raises(TypeError, match=r"SwinForImageClassification holds no window-sparse Swin; call .*sparsify"):
        SparsityCallback(transformers.SwinForImageClassification(_hf_swin_config(num_labels=5)))


class _OwnClassifier(torch.nn.Module):
    """A model of one's own: a per-batch mean loss, no loss kwargs, so ``training_step`` divides it."""

    def __init__(self, swin: torch.nn.Module) -> None:
        super().__init__()
        self.swin = swin

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.swin(pixel_values=pixel_values).logits
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)  # no labels: teacher
        return {"loss": loss, "logits": logits}


def _step_grads(tmp_path, model_kind: str, distill: bool, accumulation: int) -> dict[str, torch.Tensor]:
    """The gradients of one optimiser step over the same 4 images, in ``accumulation`` micro-batches."""
    transformers = pytest.importorskip("transformers")
    from sparsevit_sdk.accuracy.trainer import SparsityTrainer

    swin = sparsify(_randomize(transformers.SwinForImageClassification(_hf_swin_config(num_labels=5,
                                                                                          drop_path_rate=0.0))))
    model = swin if model_kind == "hf" else _OwnClassifier(swin)
    args = _args(tmp_path, per_device_train_batch_size=4 // accumulation, gradient_accumulation_steps=accumulation,
                 max_steps=1, max_grad_norm=0.0)
    trainer = SparsityTrainer(model=model, args=args, train_dataset=_Images(4), distill=2.0 if distill else None)
    assert trainer.model_accepts_loss_kwargs == (model_kind == "hf")  # both of training_step's scalings are run
    grads = {}
    trainer.add_callback(type("Grads", (transformers.TrainerCallback,), {"on_pre_optimizer_step": lambda self, *a, **k:
                         grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})}))
    trainer.train()
    return grads


@pytest.mark.parametrize("model_kind", ["hf", pytest.param("own", marks=pytest.mark.slow)])
def test_gradient_accumulation_scales_label_loss_and_distillation_alike(tmp_path, model_kind):
    """Two half-batches accumulated give the full batch's gradients, for the label loss and for the term."""
    full, halves = ({d: _step_grads(tmp_path, model_kind, d, accumulation) for d in (False, True)}
                    for accumulation in (1, 2))
    for distill in (False, True):
        assert full[distill].keys() == halves[distill].keys() and full[distill]
    for name, g in full[True].items():
        label = full[False][name]
        torch.testing.assert_close(halves[False][name], label, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(halves[True][name] - halves[False][name], g - label, rtol=1e-4, atol=1e-6)
    assert any((g - full[False][n]).abs().max() > 1e-3 for n, g in full[True].items())  # the term has a gradient


def test_trainer_distils_from_a_frozen_copy_of_the_original_model(tmp_path):
    """``Distillation(teacher=model)`` after ``sparsify(model)``: the teacher's outputs never move in training."""
    transformers = pytest.importorskip("transformers")
    from sparsevit_sdk.accuracy import Distillation
    from sparsevit_sdk.accuracy.trainer import SparsityTrainer

    original, student = _hf_classifier()
    with pytest.raises(ValueError, match="teacher is the student itself"):
        SparsityTrainer(model=student, args=_args(tmp_path), train_dataset=_Images(6),
                        distill=Distillation(teacher=student))
    trainer = SparsityTrainer(model=student, args=_args(tmp_path, learning_rate=1e-2), train_dataset=_Images(6),
                              distill=Distillation(teacher=original))
    x = _randn(2, 3, 64, 64)
    before, trained = trainer.adapter.teacher_outputs(pixel_values=x).logits, original(pixel_values=x).logits
    seen = []  # after each step's distillation: the student's modes, and whether the teacher's outputs moved
    trainer.add_callback(type("Spy", (transformers.TrainerCallback,), {"on_pre_optimizer_step": lambda self, *a, **k:
                         seen.append(({m.training for m in student.modules()},
                                      torch.equal(trainer.adapter.teacher_outputs(pixel_values=x).logits, before)))}))
    trainer.train()
    assert seen == [({True}, True)] * 3
    assert not torch.allclose(original(pixel_values=x).logits, trained)  # the original trained, as the student
