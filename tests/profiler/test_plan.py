"""profiler/plan.py: parsing resolutions."""

from __future__ import annotations

import pytest

from sparsevit_sdk.profiler import (
    parse_resolution,
)


@pytest.mark.parametrize("text, expected", [("672x448", (672, 448)), ("224", (224, 224)), (" 64 X 96 ", (64, 96)),
                                            (128, (128, 128)), ((32, 48), (32, 48))])
def test_parse_resolution(text, expected):
    assert parse_resolution(text) == expected


@pytest.mark.parametrize("text", ["672by672", "x224", "", "0x10", "-5"])
def test_bad_resolution(text):
    with pytest.raises(ValueError, match="resolution"):
        parse_resolution(text)
