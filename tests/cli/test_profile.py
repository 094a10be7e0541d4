"""sparsevit-profile: quick runs, a user's whole model, errors, outputs checked before measuring, and a sweep killed
mid-way."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from sparsevit_sdk import (
    LatencyPredictor,
)
from sparsevit_sdk.cli import profile as profile_cli
from sparsevit_sdk.cli.profile import main
from sparsevit_sdk.dataset import LAYER_KINDS, dataset_path, load_profiles
from sparsevit_sdk.profiler.timing import num_threads

from ..profiler.test_sweep import _tmp_files
from .conftest import _no_work


def test_cli_quick_run_writes_a_dataset(tmp_path, capsys):
    assert main(["--device", "cpu", "--model", "swin_micro", "--quick", "--resolution", "64x64",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    assert "new measurements" in capsys.readouterr().out
    df = pd.read_parquet(tmp_path / "cpu" / "swin_micro.parquet")
    assert len(df) and set(df["layer"]) == set(LAYER_KINDS) - {"whole"}


@pytest.mark.parametrize("argv, message", [
    (["--model", "swin_micro", "--device", "tpu"], "cpu' or 'cuda:N'"),
    (["--model", "swin_xl"], "known models: "),
    (["--model", "swin_micro", "--configs", "-1"], "random_configs"),
])
def test_cli_errors_are_explained(tmp_path, capsys, argv, message):
    base = ["--quick", "--resolution", "64", "--out", str(tmp_path), "--no-progress"]
    assert main(base + argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cli_cuda_without_cuda(tmp_path, capsys):
    assert main(["--device", "cuda:0", "--model", "swin_micro", "--quick", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_killed_mid_sweep_saves_a_valid_dataset(tmp_path):
    """SIGTERM (as Ctrl-C) during the sweep: exit 130, measured rows saved, no temporary file left."""
    cmd = [sys.executable, "-m", "sparsevit_sdk.cli.profile", "--model", "swin_micro", "--resolution", "64",
           "--repeats", "500", "--out", str(tmp_path), "--no-progress"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "profiling swin_micro" in line:
            break
    time.sleep(1.5)  # a few units measured, far from done
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    path = tmp_path / "cpu" / "swin_micro.parquet"
    saved = load_profiles(path)
    assert 0 < len(saved) < 80
    assert _tmp_files(path.parent) == []


@pytest.mark.parametrize("argv", [["--resolution", "672by672"], ["--batch", "0"], ["--dtype", "fp64"]])
def test_cli_rejects_unparseable_arguments(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["--model", "swin_micro", *argv])
    assert info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


def test_the_profile_command_times_a_users_whole_model(tmp_path, monkeypatch, capsys):
    from sparsevit_sdk.cli import fit, profile

    (tmp_path / "my_models.py").write_text(
        "from sparsevit_sdk import build_model\nimport torch.nn as nn\n\n"
        "class Seg(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.backbone = build_model('swin_micro')\n        self.head = nn.Conv2d(32, 4, 1)\n\n"
        "    def forward(self, x):\n        return self.head(self.backbone(x)[0])\n\n\n"
        "def segmenter():\n    return Seg()\n\n\ndef not_a_model():\n    return 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "p"
    assert profile.main(["--device", "cpu", "--model", "my_models:segmenter", "--quick", "--resolution", "224",
                         "--out", str(out), "--no-progress"]) == 0
    assert profile.main(["--device", "cpu", "--model", "my_models:not_a_model", "--quick", "--out", str(out)]) == 2
    assert profile.main(["--device", "cpu", "--model", "my_models:nope", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "returned a int, not a torch.nn.Module" in err and "cannot import 'nope'" in err
    hw = next(p.name for p in out.iterdir())
    assert fit.main(["--profiles", str(out / hw), "--out", str(tmp_path / "pred.json")]) == 0
    rest = LatencyPredictor.load(tmp_path / "pred.json").learned_.rest
    assert len(rest) == 1 and next(iter(rest)).startswith("Seg-") and next(iter(rest.values()))["calls"] == 1


@pytest.mark.parametrize("kind", ["folder", "under-a-file"])
def test_profile_refuses_its_out_before_measuring(tmp_path, capsys, monkeypatch, kind):
    monkeypatch.setattr(profile_cli, "profile_model", _no_work)
    out = tmp_path
    if kind == "folder":  # where the dataset file should go
        dataset_path(out, "cpu", "swin_micro").mkdir(parents=True)
    else:  # where the dataset root should be
        out = tmp_path / "file"
        out.write_text("")
    assert profile_cli.main(["--model", "swin_micro", "--quick", "--resolution", "64", "--out", str(out),
                             "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsevit-profile: error: --out: ") and str(out) in err and "\n" not in err


_BUILD = ("from sparsevit_sdk import build_model\nimport torch.nn as nn\n\n\n"
          "class {cls}(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
          "        self.backbone = build_model('swin_micro')\n        self.head = nn.Conv2d(32, {out}, 1)\n\n"
          "    def forward(self, x):\n        return self.head(self.backbone(x)[0])\n\n\n"
          "def build():\n    return {cls}()\n")


@pytest.mark.slow
def test_two_modules_build_functions_profiled_into_one_out_keep_both_models(tmp_path, monkeypatch):
    """``--model m_a:build`` then ``--model m_b:build``: both wrote build.parquet, and the merge key had no
    model, so the second deleted the first one's whole-model row."""
    for module, cls, out in (("m_a", "Classifier", 10), ("m_b", "Segmenter", 4)):
        (tmp_path / f"{module}.py").write_text(_BUILD.format(cls=cls, out=out))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "p"
    for module in ("m_a", "m_b"):
        assert main(["--model", f"{module}:build", "--quick", "--resolution", "64", "--out", str(out),
                     "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "cpu").glob("*.parquet")) == ["m_a.build.parquet", "m_b.build.parquet"]
    whole = load_profiles(out / "cpu").query("layer == 'whole'")
    assert sorted(key.split("-")[0] for key in whole["model"]) == ["Classifier", "Segmenter"]
