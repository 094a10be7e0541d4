"""search/settings.py: budgets."""

from __future__ import annotations

import pytest

from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import resolve_budget


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


def test_api_budget_messages_suggest_budget_ms_only_when_it_could_be_ms():
    with pytest.raises(ValueError, match=r"in \(0, 1\], got -0.5$"):
        resolve_budget(-0.5, None, 10.0)
    with pytest.raises(ValueError, match="pass budget_ms=7.0"):
        resolve_budget(7.0, None, 10.0)
