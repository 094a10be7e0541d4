"""predictor/features.py and the units a config is made of."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsevit_sdk import build_model, search_space
from sparsevit_sdk.predictor import agreement, config_units
from sparsevit_sdk.predictor.features import FEATURES, unit_features

SHAPE = (1, 3, 96, 96)


def test_units_match_the_profilers_rows(measured):
    """Every unit the predictor builds for a config has the features of a row the profiler measured."""
    model = build_model("swin_micro")
    cfg = search_space(model).uniform(0.5)
    units = config_units(model.architecture, SHAPE, "fp32",
                         cfg.block_sparsity(model.signature, model.depths))
    assert set(units.layer) == {"patch_embed", "patch_merge", "score", "block_pair", "norm"}
    rows = measured[(measured.img_h == 96) & (measured.layer != "model")]
    seen = {(kind, *f) for kind, f in zip(rows.layer, unit_features(rows).round(6).tolist())}
    for kind, f in zip(units.layer, unit_features(units).round(6).tolist()):
        assert (kind, *f) in seen, kind


def test_features_are_finite_and_agreement_is_symmetric(measured):
    units = measured[measured.layer != "model"]
    assert np.isfinite(unit_features(units)).all()
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.05, 2.5, 3.0])
    assert agreement(a, b) == agreement(b, a) == pytest.approx(200 / 3)


def test_the_v2_feature_marks_only_v2_blocks_and_mergings():
    units = pd.concat([config_units(build_model(name).architecture, SHAPE, "fp32", [[0.5, 0.5]] * 4)
                       for name in ("swin_micro", "swinv2_micro")])
    v2 = unit_features(units)[:, list(FEATURES).index("v2")]
    expected = units["signature"].str.startswith("swinv2-") & units["layer"].isin(["block_pair", "patch_merge"])
    assert (v2 == expected.to_numpy()).all() and v2.any()
