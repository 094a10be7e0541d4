"""outputs.py: one reading of what a model returns, and the metrics and proxies that use it on a
Hugging Face classifier's ``SwinImageClassifierOutput``."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk import search_space, sparsify
from sparsevit_sdk.accuracy import Accuracy, AccuracyProxy, AgreementProxy, MeanIoU
from sparsevit_sdk.outputs import prediction, tensor_leaves

LOGITS = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0]])  # (B=2, K=3): predicts classes 0 and 1


@pytest.mark.parametrize("output", [
    LOGITS, (LOGITS, torch.zeros(2, 5)), [LOGITS], {"out": LOGITS, "aux": torch.zeros(2)},
    {"loss": torch.tensor(0.5), "logits": LOGITS},  # a ModelOutput with labels given holds the loss first
], ids=["tensor", "tuple", "list", "dict", "logits-key"])
def test_prediction_reads_every_output_form(output):
    assert prediction(output) is LOGITS


def test_prediction_of_an_output_without_a_tensor_says_what_to_return():
    with pytest.raises(TypeError, match=r"holds no tensor.*\.logits"):
        prediction({"loss": None})


def test_tensor_leaves_keeps_order_and_skips_none():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    assert tensor_leaves({"x": a, "y": None, "z": (b, [c])}) == (a, b, c)


@pytest.mark.parametrize("metric", [Accuracy(), MeanIoU(3)], ids=["accuracy", "miou"])
def test_builtin_metrics_read_tuples_and_dicts(metric):
    for output in (LOGITS, (LOGITS,), {"logits": LOGITS}):
        metric.reset()
        metric.update(output, torch.tensor([0, 2]))
        assert metric.compute() == pytest.approx(0.5 if isinstance(metric, Accuracy) else (1 + 0 + 0) / 3)


@pytest.fixture(scope="module")
def hf_classifier():
    """A random-init Hugging Face ``SwinForImageClassification`` (tiny, no download), made window-sparse."""
    transformers = pytest.importorskip("transformers")
    config = transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2],
                                     num_heads=[1, 2, 2], window_size=4, num_labels=3)
    torch.manual_seed(0)
    return sparsify(transformers.SwinForImageClassification(config).eval())


def test_accuracy_proxy_scores_a_hugging_face_classifier(hf_classifier):
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = hf_classifier(x)
    assert type(output).__name__ == "SwinImageClassifierOutput"
    labels = output.logits.argmax(1)  # the dense model's own answers: accuracy 1 at sparsity 0
    proxy = AccuracyProxy(hf_classifier, [(x, labels)], metric=Accuracy())
    space = search_space(hf_classifier)
    assert proxy(space.dense()) == 1.0
    assert 0.0 <= proxy(space.uniform(0.5)) <= 1.0
    plain = AccuracyProxy(hf_classifier, [(x, labels)], metric=lambda logits, y: float((logits.argmax(1) == y).mean(
        dtype=torch.float)))  # a plain function gets the logits too
    assert plain(space.dense()) == 1.0
    assert AgreementProxy(hf_classifier, [x])(space.dense()) == pytest.approx(1.0)
