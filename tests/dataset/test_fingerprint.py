"""dataset/fingerprint.py: a device fingerprint is checked against its rows."""

from __future__ import annotations

import json

import pytest

from sparsevit_sdk._documents import DocumentError
from sparsevit_sdk.dataset import SchemaError, load_profiles
from sparsevit_sdk.dataset.fingerprint import fingerprint_id

from .conftest import _fit


def test_fingerprint_edited_to_another_device_is_refused_by_fit(folder, tmp_path, capsys):
    """Edited to claim an A100 over CPU rows: the stored id no longer hashes the content."""
    path = folder / "fingerprint.json"
    fp = json.loads(path.read_text())
    path.write_text(json.dumps({**fp, "name": "NVIDIA A100-SXM4-80GB", "device_type": "cuda"}, indent=2))
    _, err = _fit(folder, tmp_path, capsys)
    assert str(path) in err and "'fingerprint_id'" in err and "hash to" in err and "sparsevit-profile" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("content, expected", [
    ([], "the document is a list, expected an object"),
    ({"device_type": "cpu", "name": "x"}, "field 'fingerprint_id' is missing"),
    ({"fingerprint_id": "abc"}, "field 'device_type' is missing"),
])
def test_malformed_fingerprint_is_named(folder, content, expected):
    path = folder / "fingerprint.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DocumentError, match=expected) as err:
        load_profiles(folder)
    assert str(path) in str(err.value)


def test_fingerprint_of_other_rows_is_refused_not_dropped(folder, tmp_path, capsys):
    """A consistent sidecar of another device over these rows: fit used to drop the description."""
    path = folder / "fingerprint.json"
    other = {**json.loads(path.read_text()), "name": "Other CPU 9000"}
    other["fingerprint_id"] = fingerprint_id(other)
    path.write_text(json.dumps(other))
    with pytest.raises(SchemaError, match="field 'fingerprint_id'.*swin_micro.parquet.*Restore") as err:
        load_profiles(folder)
    assert str(path) in str(err.value)
    _, err = _fit(folder, tmp_path, capsys)
    assert str(path) in err and other["fingerprint_id"] in err


def test_untouched_folder_keeps_its_description(folder):
    df = load_profiles(folder)
    assert list(df.attrs["fingerprints"]) == list(df["fingerprint_id"].unique())
