"""accuracy/metrics.py."""

from __future__ import annotations

import pytest
import torch

from sparsevit_sdk.accuracy import (
    Accuracy,
    MeanIoU,
)
from sparsevit_sdk.profiler.timing import num_threads


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two torch threads on a shared, loaded 2-core machine made this file 9x slower (measured: 490 s vs 52 s)."""
    with num_threads(1):
        yield


def test_metrics_on_known_predictions():
    target = torch.tensor([[0, 0, 1, 2]])  # (B=1, N=4)
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1, 1, 2]]), 3).permute(0, 2, 1).float()  # (1, 3, 4)
    miou, acc = MeanIoU(3), Accuracy()
    miou.update(logits, target)
    acc.update(logits, target)
    assert miou.compute() == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert acc.compute() == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="empty"):
        MeanIoU(3).compute()
    with pytest.raises(ValueError, match="classes on dim 1"):
        MeanIoU(4).update(logits, target)
