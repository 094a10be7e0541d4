"""predictor/costs.py: the shapes a prediction accepts."""

from __future__ import annotations

import pytest

from sparsevit_sdk import LatencyPredictor, search_space
from sparsevit_sdk.profiler.timing import num_threads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


def test_predictor_refuses_a_shape_the_model_refuses(micro):
    predictor, cfg = LatencyPredictor.for_hardware("cpu"), search_space(micro).dense()
    with pytest.raises(ValueError, match=r"has 1 channels, but the model takes 3"):
        predictor.predict_config(micro, (1, 1, 224, 224), cfg)
    assert predictor.predict_config(micro, (1, 3, 224, 224), cfg) > 0
