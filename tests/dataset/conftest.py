"""A small profiled dataset to vandalise."""

from __future__ import annotations

import shutil

import pytest

from sparsevit_sdk.cli.fit import main as fit_main
from sparsevit_sdk.profiler import SweepSettings, profile_model

FAST = SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=3)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("profiles")
    profile_model("swin_micro", resolutions=["64x64"], grid=(0.0, 0.5), settings=FAST, out=out, progress=False)
    return out


@pytest.fixture()
def folder(profiled, tmp_path):
    """A fresh copy of the dataset folder to vandalise."""
    return shutil.copytree(profiled / "cpu", tmp_path / "cpu")


def _fit(folder, tmp_path, capsys) -> tuple[int, str]:
    out = tmp_path / "pred.json"
    code = fit_main(["--profiles", str(folder), "--out", str(out)])
    assert code != 0 and not out.exists()
    return code, capsys.readouterr().err
