"""sparsevit-export."""

from __future__ import annotations

import pytest

from sparsevit_sdk import (
    SearchSession,
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


@pytest.fixture(scope="module")
def result_file(tmp_path_factory):
    """A search result saved at 64x96, not the command's 224x224 default."""
    path = tmp_path_factory.mktemp("result") / "result.json"
    SearchSession(build_model("swin_micro"), "cpu", proxy=lambda cfg: -sum(cfg.ratios), input_shape=(1, 3, 64, 96),
                  latency_budget=0.9, population=4, parents=2, generations=0, progress=False).run().save(path)
    return path


@pytest.mark.slow  # one export, ~8 s
def test_a_search_result_exports_at_its_own_input_shape(tmp_path, capsys, result_file):
    assert export_cli(["--model", "swin_micro", "--config", str(result_file), "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr()
    assert "input 1x3x64x96" in out.out and "note" not in out.err
    graph_input = onnx.load(str(tmp_path / "m.onnx")).graph.input[0]
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim] == [1, 3, 64, 96]


def test_overriding_a_search_results_input_shape_says_so(tmp_path, capsys, result_file):
    # an input no memory holds: the export stops right after the note, before any graph is built
    assert export_cli(["--model", "swin_micro", "--config", str(result_file), "--resolution", "99999x99999",
                       "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "exporting for input 1x3x99999x99999, not the 1x3x64x96 the search result was searched at" in err
    assert not (tmp_path / "m.onnx").exists()
