"""search/result.py: a result file must agree with itself."""

from __future__ import annotations

import copy

import pytest
import torch.nn as nn

from sparsevit_sdk import SearchResult, SearchSession, build_model
from sparsevit_sdk._documents import DocumentError
from sparsevit_sdk.dataset.schema import HOUR_MS
from sparsevit_sdk.sparse import set_window_score

SHAPE = (1, 3, 112, 112)


@pytest.fixture(scope="module")
def saved_result(micro) -> dict:
    from sparsevit_sdk import SearchSession
    from sparsevit_sdk.accuracy import AgreementProxy
    from sparsevit_sdk.demo import probe_images

    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    return SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4, parents=2,
                         generations=0, progress=False).run().to_dict()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("predicted_ms", -5, "predicted_ms is -5, expected a latency"),
    ("predicted_ms", 0, "predicted_ms is 0"),
    ("predicted_ms", "11.5", "predicted_ms is '11.5'"),
    ("predicted_ms", None, "predicted_ms is None"),
    ("score", float("nan"), "score is nan, expected a finite number"),
    ("input_shape", [1, 3, 112.5, 112], "input_shape is .* four positive integers"),
    ("best", {"ratios": [0.1, 0.1, 0.1, 0.1]}, "best is '.*', expected a config of the history"),
])
def test_a_result_file_must_agree_with_itself(tmp_path, saved_result, field, value, message):
    data = copy.deepcopy(saved_result)
    data[field] = {**data["best"], **value} if field == "best" else value
    with pytest.raises(ValueError, match=f"r.json: corrupt search result: {message}"):
        SearchResult.from_dict(data, source="r.json")


def test_a_binary_or_deeply_nested_result_file_is_refused_in_one_line(tmp_path):
    binary = tmp_path / "r.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DocumentError, match="not a sparsevit search result"):
        SearchResult.load(binary)
    binary.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DocumentError, match="nested too deep"):
        SearchResult.load(binary)


SMALL = (1, 3, 64, 64)


class _Classifier(nn.Module):
    """A whole model: the backbone and a head, the rest of it."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = build_model("swin_micro")
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


def _search(model: nn.Module, **options) -> SearchResult:
    return SearchSession(model, "cpu", proxy=lambda cfg: -cfg.mean, input_shape=SMALL, latency_budget=0.95,
                         population=4, parents=2, generations=0, progress=False, **options).run()


def test_a_rest_over_an_hour_the_search_saved_loads_back(tmp_path):
    """The reader's hour ceiling refused a result the search itself wrote: the whole-model latency adds the
    user's rest of the model, which no prediction bounds."""
    result = _search(_Classifier(), rest_ms=2 * HOUR_MS, budget_of="backbone")
    loaded = SearchResult.load(result.save(tmp_path / "r.json"))
    assert loaded.predicted_ms == result.predicted_ms > 2 * HOUR_MS and loaded.rest.ms == 2 * HOUR_MS


def test_the_window_score_searched_with_is_saved_loaded_and_applied(tmp_path):
    result = _search(set_window_score(build_model("swin_micro"), "deviation"))
    assert result.window_score == "deviation" and result.to_dict()["window_score"] == "deviation"
    path = result.save(tmp_path / "r.json")
    fresh = build_model("swin_micro")  # ranks by norm, the default
    loaded = SearchResult.load(path, model=fresh)
    assert loaded.window_score == "deviation" and {s.window_score for s in fresh.stages} == {"deviation"}
    later = build_model("swin_micro")  # a model handed to validate() later ranks as the search's did too
    report = SearchResult.load(path).validate(model=later, repeats=1, warmup=0, rounds=1)
    assert report is not None and {s.window_score for s in later.stages} == {"deviation"}
    assert _search(build_model("swin_micro")).window_score == "norm"


def test_a_result_without_a_window_score_reads_as_norm_and_a_wrong_one_is_refused(saved_result):
    old = {k: v for k, v in saved_result.items() if k != "window_score"} | {"schema_version": 2}
    assert SearchResult.from_dict(old).window_score == "norm"
    with pytest.raises(ValueError, match="r.json: corrupt search result: window_score is 'l2', expected one of"):
        SearchResult.from_dict({**saved_result, "window_score": "l2"}, source="r.json")
