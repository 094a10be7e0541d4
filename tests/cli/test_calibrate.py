"""sparsevit-calibrate."""

from __future__ import annotations

import pytest

from sparsevit_sdk import LatencyPredictor
from sparsevit_sdk.cli import calibrate as calibrate_cli


@pytest.mark.slow
def test_sparsevit_calibrate_writes_the_predictor_and_reports_its_cross_validation(cache, tmp_path, capsys):
    out = tmp_path / "micro.json"
    assert calibrate_cli.main(["--model", "swin_micro", "--resolution", "112", "--out", str(out), "--time-limit",
                               "20"]) == 0
    printed = capsys.readouterr().out
    assert "cross-validated on its" in printed and "within ±10 %" in printed
    saved = LatencyPredictor.load(out)
    assert saved.hw == "local" and saved.learned_.calibration["time_limit_s"] == 20


def test_sparsevit_calibrate_refuses_an_unwritable_output_before_measuring(cache, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert calibrate_cli.main(["--model", "swin_micro", "--resolution", "112", "--out", str(blocker / "p.json")]) == 2
    assert "--out" in capsys.readouterr().err and not cache.exists()
