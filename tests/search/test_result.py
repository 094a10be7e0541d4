"""search/result.py: a result file must agree with itself."""

from __future__ import annotations

import copy

import pytest

from sparsevit_sdk import SearchResult
from sparsevit_sdk._documents import DocumentError

SHAPE = (1, 3, 112, 112)


@pytest.fixture(scope="module")
def saved_result(micro) -> dict:
    from sparsevit_sdk import SearchSession
    from sparsevit_sdk.accuracy import AgreementProxy, probe_images

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
