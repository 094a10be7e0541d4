"""sparsevit-export."""

from __future__ import annotations

import pytest

from sparsevit_sdk import (
    build_model,
    search_space,
)
from sparsevit_sdk.cli.export import main as export_cli

from ..deploy.test_onnx import _ops

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

@pytest.mark.slow  # one export, ~8 s; export itself is covered in tests/deploy
def test_export_cli(tmp_path, capsys):
    cfg = search_space(build_model("swin_micro")).uniform(0.4)
    cfg.to_json(tmp_path / "cfg.json")
    assert export_cli(["--model", "swin_micro", "--config", str(tmp_path / "cfg.json"), "--resolution", "64x96",
                       "--out", str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out and "TopK" in _ops(tmp_path / "m.onnx")
    assert export_cli(["--model", "swin_micro", "--uniform", "0.5", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
