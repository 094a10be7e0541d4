"""sparsevit-fit: writes the predictor and its plot, merges runs by fingerprint, refuses bad arguments and outputs
before the work."""

from __future__ import annotations

import pytest

from sparsevit_sdk import LatencyPredictor
from sparsevit_sdk.cli import fit as fit_cli
from sparsevit_sdk.cli.fit import main as fit_main
from sparsevit_sdk.dataset import read_fingerprint
from sparsevit_sdk.profiler import SweepSettings, profile_model
from sparsevit_sdk.profiler.timing import num_threads

from .conftest import _bad, _no_work, _refused


def test_fit_cli_writes_predictor_and_plot(profile_dir, tmp_path, capsys):
    out, png = tmp_path / "p.json", tmp_path / "fit.png"
    args = ["--profiles", str(profile_dir), "--out", str(out), "--plot", str(png), "--n-estimators", "50"]
    assert fit_main(args) == 0
    assert LatencyPredictor.load(out).learned_.fingerprint["clock"] == "cpu"  # the sidecar travels into the file
    assert png.stat().st_size > 0 and f"wrote {png}" in capsys.readouterr().out


FAST = SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=2)


SWEEP = dict(resolutions=["64x64"], settings=FAST, grid=(0.0, 0.5))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


def test_fit_merges_runs_and_refuses_to_mix_fingerprints(tmp_path, capsys):
    for run, clock in (("a", "wall"), ("b", "wall"), ("c", "cpu")):  # a, b: one device; c: another timing clock
        profile_model("swin_micro", hw="box", out=tmp_path / run, clock=clock, threads=1, seed=ord(run), progress=False,
                      **SWEEP)
    ids = {run: read_fingerprint(tmp_path / run / "box")["fingerprint_id"] for run in "abc"}
    assert ids["a"] == ids["b"] != ids["c"]
    args = ["--n-estimators", "20", "--out", str(tmp_path / "box.json")]
    assert fit_main(["--profiles", str(tmp_path / "a"), "--profiles", str(tmp_path / "b"), *args]) == 0
    assert "wrote" in capsys.readouterr().out
    three = [f"--profiles={tmp_path / run}" for run in "abc"]
    assert fit_main([*three, *args]) == 2
    err = capsys.readouterr().err
    assert "2 device fingerprints" in err and ids["c"] in err and "--mix-fingerprints" in err
    assert fit_main([*three, "--fingerprint", ids["c"], *args]) == 0
    assert fit_main([*three, "--mix-fingerprints", *args]) == 0


@pytest.mark.parametrize("value", ["2", "-1", "0", "1"])
def test_cli_fit_refuses_an_overhead_fraction_outside_0_1(tmp_path, capsys, value):
    err = _refused(fit_main, ["--profiles", str(tmp_path), "--out", str(tmp_path / "p.json"), "--overhead-fraction",
                              value], capsys)
    assert f"argument --overhead-fraction: expected a fraction in (0, 1), got '{value}'" in err


@pytest.mark.parametrize("flag, kind", [("--out", "folder"), ("--out", "under-a-file"), ("--plot", "folder")])
def test_fit_refuses_its_outputs_before_fitting(tmp_path, capsys, monkeypatch, flag, kind):
    monkeypatch.setattr(fit_cli, "load_profiles", _no_work)
    paths = {"--out": str(tmp_path / "ok.json"), flag: str(_bad(tmp_path, kind))}
    argv = ["--profiles", str(tmp_path / "profiles"), *(x for item in paths.items() for x in item)]
    assert fit_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparsevit-fit: error: {flag}: ") and paths[flag] in err and "\n" not in err
