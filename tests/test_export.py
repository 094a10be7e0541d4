"""ONNX export and graph capture: a searched config runs in ONNX Runtime and compiles as one graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsevit_sdk import (
    SearchSession,
    SearchSpace,
    SparsityConfig,
    build_model,
    measure_latency,
    set_sparsity,
    sparse_backbone,
    sparsify,
)
from sparsevit_sdk.cli.export import main as export_cli
from sparsevit_sdk.deploy import export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(path, x: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def _eager(model, cfg: SparsityConfig, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of ``model`` at ``cfg``, its sparsity dense again afterwards."""
    set_sparsity(model, cfg)
    try:
        with torch.inference_mode():
            return model(x)
    finally:
        set_sparsity(model, SearchSpace.from_model(model).dense())


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_onnx_runtime_equals_eager_at_an_odd_size_and_batch_two(micro, tmp_path, sparsity):
    shape = (2, 3, 97, 130)
    cfg = SearchSpace.from_model(micro).uniform(sparsity)
    path = export_onnx(micro, tmp_path / "m.onnx", shape, cfg)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    expected = _eager(micro, cfg, x)
    got = _run(path, x)
    assert len(got) == len(expected) == 4
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e.numpy(), rtol=0, atol=1e-4)
    # a sparse config keeps windows with a constant-k TopK and scatters them back; a dense one is plain Swin;
    # neither has a data-dependent shape (what TensorRT and OpenVINO refuse)
    assert ({"TopK", "ScatterND"} <= _ops(path)) == (sparsity > 0)
    assert not _ops(path) & {"NonZero", "Loop", "If"}


@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_openvino_runs_the_exported_graph_as_eager_does(micro, tmp_path, sparsity):
    ov = pytest.importorskip("openvino")
    shape = (2, 3, 97, 130)
    cfg = SearchSpace.from_model(micro).uniform(sparsity)
    path = export_onnx(micro, tmp_path / "m.onnx", shape, cfg)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    expected = _eager(micro, cfg, x)
    core = ov.Core()  # f32: on a CPU with AMX or AVX-512 bf16, OpenVINO would otherwise run in bf16
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x.numpy())
    for output, e in zip(compiled.outputs, expected):
        np.testing.assert_allclose(got[output], e.numpy(), rtol=0, atol=1e-4)


def test_a_converted_timm_classifier_exports_its_logits(tmp_path):
    timm = pytest.importorskip("timm")
    model = sparsify(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, embed_dim=32,
                                       depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), dynamic_img_size=True).eval())
    cfg = SearchSpace.from_model(model).uniform(0.3)
    path = export_onnx(model, tmp_path / "timm.onnx", (1, 3, 288, 416), cfg)
    x = torch.randn(1, 3, 288, 416)
    set_sparsity(model, cfg)
    with torch.inference_mode():
        expected = model(x)
    (got,) = _run(path, x)
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)


def test_export_restores_the_model_and_refuses_bad_input_before_writing(micro, tmp_path):
    before = micro.block_sparsity
    export_onnx(micro, tmp_path / "a.onnx", (1, 3, 64, 64), SearchSpace.from_model(micro).uniform(0.5))
    assert micro.block_sparsity == before and not micro.training
    foreign = SearchSpace.from_model(build_model("swin_t", seed=None)).uniform(0.5)
    with pytest.raises(ValueError, match="made for model"):
        export_onnx(micro, tmp_path / "b.onnx", (1, 3, 64, 64), foreign)
    swin_t = build_model("swin_t", seed=None)
    decreasing = SparsityConfig((0.0, 0.0, 0.5, 0.1, 0.0, 0.0), swin_t.signature)  # stage 3 holds three knobs
    with pytest.raises(ValueError, match="decrease|order"):
        export_onnx(swin_t, tmp_path / "c.onnx", (1, 3, 64, 64), decreasing)
    with pytest.raises(ValueError, match="channels"):
        export_onnx(micro, tmp_path / "d.onnx", (1, 1, 64, 64))
    with pytest.raises(IsADirectoryError):
        export_onnx(micro, tmp_path, (1, 3, 64, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]  # nothing half-written


def test_fp16_export_is_half_precision_and_keeps_the_fp32_windows(micro, tmp_path):
    shape = (1, 3, 64, 96)
    cfg = SearchSpace.from_model(micro).uniform(0.5)
    path = export_onnx(micro, tmp_path / "half.onnx", shape, cfg, dtype="fp16")
    assert next(micro.parameters()).dtype == torch.float32  # restored
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    params = {name for name, _ in micro.named_parameters()}
    weights = [t for t in graph.initializer if t.name in params]
    assert len(weights) > len(params) // 2 and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    expected = _eager(micro, cfg, x)
    got = _run(path, x.half())
    for e, g in zip(expected, got):
        assert g.dtype == np.float16
        np.testing.assert_allclose(g.astype(np.float32), e.numpy(), rtol=0, atol=0.02 * float(e.abs().max()))
    with pytest.raises(ValueError, match="unknown export dtype 'int8'"):
        export_onnx(micro, tmp_path / "int8.onnx", shape, cfg, dtype="int8")
    assert not (tmp_path / "int8.onnx").exists()


def test_export_cli(tmp_path, capsys):
    cfg = SearchSpace.from_model(build_model("swin_micro")).uniform(0.4)
    cfg.to_json(tmp_path / "cfg.json")
    assert export_cli(["--model", "swin_micro", "--config", str(tmp_path / "cfg.json"), "--resolution", "64x96",
                       "--out", str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out and "TopK" in _ops(tmp_path / "m.onnx")
    assert export_cli(["--model", "swin_micro", "--uniform", "0.5", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_sparse_model_compiles_as_one_graph(micro):
    """fullgraph=True: no graph break (no .item(), host sync or data-dependent Python branch) in the forward."""
    set_sparsity(micro, SearchSpace.from_model(micro).uniform(0.5))
    try:
        x = torch.randn(2, 3, 97, 130)
        with torch.no_grad():
            expected = micro(x)
            torch._dynamo.reset()
            got = torch.compile(micro, fullgraph=True, backend="aot_eager")(x)
    finally:
        set_sparsity(micro, SearchSpace.from_model(micro).dense())
        torch._dynamo.reset()
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)
    assert sparse_backbone(micro) is micro


@pytest.mark.parametrize("runtime", ["onnxruntime", "compiled"])
def test_measure_latency_in_a_runtime(micro, runtime):
    set_sparsity(micro, SearchSpace.from_model(micro).uniform(0.5))
    try:
        stats = measure_latency(micro, (1, 3, 64, 64), runtime=runtime, warmup=1, repeats=2, threads=1)
    finally:
        set_sparsity(micro, SearchSpace.from_model(micro).dense())
        torch._dynamo.reset()
    assert stats.p10_ms > 0 and stats.threads == 1


def test_runtimes_refuse_what_they_cannot_time(micro):
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        measure_latency(micro, (1, 3, 64, 64), runtime="tensorrt")
    with pytest.raises(ValueError, match="clock='wall'"):
        measure_latency(micro, (1, 3, 64, 64), runtime="onnxruntime", clock="cpu", threads=1)


def test_validate_in_onnx_runtime(micro):
    shape = (1, 3, 64, 64)
    result = SearchSession(micro, "cpu", proxy=lambda cfg: -sum(cfg.ratios), input_shape=shape, latency_budget=0.9,
                           population=4, parents=2, generations=1, progress=False).run()
    report = result.validate("cpu", runtime="onnxruntime", repeats=2, warmup=1, rounds=1)
    assert report.runtime == "onnxruntime" and report.clock == "wall" and not report.comparable
    assert report.dense_ms > 0 and report.sparse_ms > 0 and "in onnxruntime" in str(report)
    assert "predicted for eager" in report.note
    assert micro.block_sparsity == [[0.0] * d for d in micro.depths] and not micro.training


def test_a_swin_v2_exports_and_runs_in_onnx_runtime(tmp_path):
    """Cosine attention, the clamped logit scale and the position-bias MLP export as plain ONNX ops."""
    model = build_model("swinv2_micro")
    shape = (1, 3, 136, 200)
    cfg = SearchSpace.from_model(model).uniform(0.5)
    path = export_onnx(model, tmp_path / "v2.onnx", shape, cfg)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    for e, g in zip(_eager(model, cfg, x), _run(path, x)):
        np.testing.assert_allclose(g, e.numpy(), rtol=0, atol=1e-4)
    assert "TopK" in _ops(path)
