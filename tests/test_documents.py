"""Files from earlier releases load (migrated) or are refused naming the release that wrote them, its schema
and the fix; one mechanism (``_documents.DocumentKind``) for every kind of file the SDK keeps.

``tests/fixtures/<commit>/`` holds real files written by that commit's code (see
``tests/fixtures/write_fixtures.py``): ba9baae, the last before the target was renamed ``hw``
(``hardware`` in results, checkpoints and predictors, at the same schema numbers), and 87f9929, the
release of 2026-12-07 (``hw`` at those numbers).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparsevit_sdk import LatencyPredictor, SearchResult, build_model, search_space
from sparsevit_sdk._documents import DocumentError, DocumentKind
from sparsevit_sdk._version import __version__
from sparsevit_sdk.dataset import load_profiles, read_fingerprint
from sparsevit_sdk.dataset.files import claim_folder, merge_rows, read_frame
from sparsevit_sdk.profiler.fingerprint import device_fingerprint
from sparsevit_sdk.search.checkpoint import read_checkpoint

from .dataset.test_files import _rows

FIXTURES = Path(__file__).parent / "fixtures"
RELEASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
SHAPE = (1, 3, 64, 64)


def test_there_are_fixtures_of_the_release_before_the_rename_and_of_the_last_one():
    assert {"ba9baae", "87f9929"} <= set(RELEASES)
    assert "hardware" in json.loads((FIXTURES / "ba9baae" / "result.json").read_text())


@pytest.mark.parametrize("release", RELEASES)
def test_an_earlier_releases_search_result_loads_migrated(release):
    """It was "corrupt search result (KeyError: 'hw')" for the release before the rename."""
    model = build_model("swin_micro")
    result = SearchResult.load(FIXTURES / release / "result.json", model=model)
    assert result.hw == "cpu" and result.window_score == "norm" and result.retried == 0
    assert result.rest.source == "none" and result.call == "model(x)"
    assert {stage.window_score for stage in model.stages} == {"norm"}
    assert "cpu (measured predictor)" in result.summary()


@pytest.mark.parametrize("release", RELEASES)
def test_an_earlier_releases_predictor_loads_migrated_and_predicts(release):
    predictor = LatencyPredictor.load(FIXTURES / release / "predictor.json")
    micro = build_model("swin_micro")
    assert predictor.hw == "cpu" and predictor.predict_config(micro, SHAPE, search_space(micro).dense()) > 0


@pytest.mark.parametrize("release", RELEASES)
def test_an_earlier_releases_profile_and_sidecar_load(release):
    folder = FIXTURES / release / "profiles" / "cpu"
    rows = load_profiles(folder)
    fingerprint = read_fingerprint(folder)
    assert len(rows) and set(rows["fingerprint_id"]) == {fingerprint["fingerprint_id"]}
    assert rows.attrs["fingerprints"] == {fingerprint["fingerprint_id"]: fingerprint}


@pytest.mark.parametrize("release", RELEASES)
def test_an_earlier_releases_checkpoint_is_refused_naming_its_schema_and_the_fix(release):
    """Checkpoints of schema 2 do not record which model's weights their scores are of (search/checkpoint.py),
    so they are refused, never half-read."""
    with pytest.raises(DocumentError, match=r"checkpoint.json: search checkpoint written by an earlier release "
                                            r"\(schema 2\); this release \(.*\) reads schema \d+: .*start the search"):
        read_checkpoint(FIXTURES / release / "checkpoint.json")


def test_files_written_now_name_their_kind_schema_and_writer(tmp_path):
    path = LatencyPredictor.load("cpu").save(tmp_path / "p.json")
    header = json.loads(path.read_text())
    assert header["format"] == "sparsevit-latency-predictor" and header["sdk_version"] == __version__
    dataset = tmp_path / "cpu" / "rows.parquet"
    merge_rows(dataset, _rows(range(2)))
    stored = json.loads(pq.read_schema(dataset).metadata[b"sparsevit"])
    assert stored == {"format": "sparsevit-profile", "schema_version": 1, "sdk_version": __version__}
    fingerprint = device_fingerprint("cpu", hw="cpu", threads=1)
    claim_folder(tmp_path / "cpu", fingerprint)
    assert json.loads((tmp_path / "cpu" / "fingerprint.json").read_text())["format"] == "sparsevit-device-fingerprint"
    assert read_fingerprint(tmp_path / "cpu") == fingerprint  # the header is the file's, not the fingerprint's


def test_a_profile_from_a_later_release_is_refused_with_the_upgrade(tmp_path):
    path = tmp_path / "rows.parquet"
    table = pa.Table.from_pandas(_rows(range(1)), preserve_index=False)
    later = {"format": "sparsevit-profile", "schema_version": 7, "sdk_version": "9.0.0"}
    pq.write_table(table.replace_schema_metadata({b"sparsevit": json.dumps(later).encode()}), path)
    with pytest.raises(DocumentError, match=r"rows.parquet: profile dataset written by sparsevit-sdk 9.0.0 "
                                            r"\(schema 7\); this release .* reads schema 1: upgrade sparsevit-sdk"):
        read_frame(path)


# --- the mechanism, on a kind of its own ------------------------------------------------------------------

NOTE = DocumentKind("sparsevit-note", 3, what="note", fix="write it again", implicit=1, migrations={
    1: lambda d: {**d, "text": d.get("text", "")},
    2: lambda d: {**{k: v for k, v in d.items() if k != "text"}, "body": d.get("text")},
})


def test_a_document_is_migrated_through_every_step_to_this_releases_schema():
    assert NOTE.upgrade({"format": "sparsevit-note", "schema_version": 2, "text": "hi"}, "n") == {
        "format": "sparsevit-note", "schema_version": 2, "body": "hi"}
    assert NOTE.upgrade({"x": 1}, "n") == {"x": 1, "body": ""}  # no header: schema 1 (implicit)
    current = {**NOTE.header(), "body": "hi"}
    assert NOTE.upgrade(current, "n") is current


@pytest.mark.parametrize(("header", "message"), [
    ({"format": "sparsevit-note", "schema_version": 4, "sdk_version": "0.3.0"},
     r"n.json: note written by sparsevit-sdk 0.3.0 \(schema 4\); this release \(.*\) reads schema 3 and migrates "
     r"from schema 1: upgrade sparsevit-sdk \(pip install -U sparsevit-sdk\), or write it again$"),
    ({"format": "sparsevit-note", "schema_version": 0},
     r"note written by an earlier release \(schema 0\); .* reads schema 3 and migrates from schema 1: write it"),
    ({"format": "sparsevit-note", "schema_version": "3"}, r"\(schema '3'\)"),
    ({"format": "sparsevit-note", "schema_version": True}, r"\(schema True\)"),
    ({"format": "sparsevit-result"}, r"not a sparsevit note \(no format 'sparsevit-note'\); write it again"),
])
def test_a_document_no_migration_reaches_is_refused_naming_writer_schema_and_fix(header, message):
    with pytest.raises(DocumentError, match=message):
        NOTE.upgrade(header, "n.json")
