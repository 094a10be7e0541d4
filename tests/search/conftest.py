"""Shared fixtures of the search tests."""

from __future__ import annotations

import pytest

from sparsevit_sdk import SearchSpace
from sparsevit_sdk.demo import default_proxy

SHAPE = (1, 3, 112, 112)


@pytest.fixture(scope="module")
def proxy(micro):
    return default_proxy(micro, SHAPE, num_images=2)


@pytest.fixture()
def swin_t_space() -> SearchSpace:
    return SearchSpace((2, 2, 6, 2), "swin-analytic")
