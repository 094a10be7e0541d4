"""deploy/onnx.py: a searched config exports to one static ONNX graph that runs as eager does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsevit_sdk import (
    SparsityConfig,
    build_model,
    search_space,
    set_sparsity,
    sparsify,
)
from sparsevit_sdk.deploy import export_onnx

from ..conftest import made_once

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ODD = (2, 3, 97, 130)  # an odd size (windows padded) and batch two


@pytest.fixture(scope="module")
def odd_graph(tmp_path_factory):
    """``odd_graph(sparsity)``: swin_micro (as ``micro``) at ODD and that uniform sparsity, exported as a user
    exports it (the default optimizer); once per run, for ONNX Runtime and OpenVINO alike."""
    def get(sparsity: float):
        def make(folder):
            folder.mkdir(parents=True)
            model = build_model("swin_micro")  # seeded: the weights of the session's micro
            export_onnx(model, ODD, folder / "m.onnx", search_space(model).uniform(sparsity))
        return made_once(tmp_path_factory, f"odd-graph-{sparsity}", make) / "m.onnx"
    return get

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
        set_sparsity(model, search_space(model).dense())


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _names(path) -> tuple[list[str], list[str]]:
    graph = onnx.load(str(path)).graph
    return [i.name for i in graph.input], [o.name for o in graph.output]


@pytest.mark.parametrize("sparsity", [pytest.param(0.0, marks=pytest.mark.slow), 0.5])
def test_onnx_runtime_equals_eager_at_an_odd_size_and_batch_two(micro, odd_graph, sparsity):
    shape = ODD
    cfg = search_space(micro).uniform(sparsity)
    path = odd_graph(sparsity)
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
    assert _names(path) == (["images"], ["output_0", "output_1", "output_2", "output_3"])  # four stage maps


def test_a_hugging_face_classifier_exports_under_its_own_names(tmp_path):
    """``pixel_values`` → ``logits``, as the model's ``main_input_name`` and output field say."""
    transformers = pytest.importorskip("transformers")
    config = transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2], num_heads=[1, 2, 2],
                                     window_size=4, num_labels=3)
    torch.manual_seed(0)
    model = sparsify(transformers.SwinForImageClassification(config).eval())
    cfg = search_space(model).uniform(0.5)
    path = export_onnx(model, (1, 3, 64, 64), tmp_path / "hf.onnx", cfg)
    assert _names(path) == (["pixel_values"], ["logits"])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"pixel_values": x.numpy()})
    np.testing.assert_allclose(got, _eager(model, cfg, x).logits.numpy(), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_names_can_be_given_and_a_wrong_count_is_refused_before_writing(micro, tmp_path):
    names = ["stage1", "stage2", "stage3", "stage4"]
    path = export_onnx(micro, (1, 3, 64, 64), tmp_path / "a.onnx", input_names=["x"], output_names=names,
                       optimize=False)  # names are given before the optimizer, which keeps them
    assert _names(path) == (["x"], names)
    with pytest.raises(ValueError, match=r"4 output\(s\) \(output_0, output_1, output_2, output_3\)"):
        export_onnx(micro, (1, 3, 64, 64), tmp_path / "b.onnx", output_names=["logits"])
    with pytest.raises(ValueError, match="1 input"):
        export_onnx(micro, (1, 3, 64, 64), tmp_path / "c.onnx", input_names=["x", "y"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]


@pytest.mark.parametrize("sparsity", [pytest.param(0.0, marks=pytest.mark.slow), 0.5])
def test_openvino_runs_the_exported_graph_as_eager_does(micro, odd_graph, sparsity):
    ov = pytest.importorskip("openvino")
    shape = ODD
    cfg = search_space(micro).uniform(sparsity)
    path = odd_graph(sparsity)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    expected = _eager(micro, cfg, x)
    core = ov.Core()  # f32: on a CPU with AMX or AVX-512 bf16, OpenVINO would otherwise run in bf16
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x.numpy())
    for output, e in zip(compiled.outputs, expected):
        np.testing.assert_allclose(got[output], e.numpy(), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_a_converted_timm_classifier_exports_its_logits(tmp_path):
    timm = pytest.importorskip("timm")
    model = sparsify(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, embed_dim=32,
                                       depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), dynamic_img_size=True).eval())
    cfg = search_space(model).uniform(0.3)
    path = export_onnx(model, (1, 3, 288, 416), tmp_path / "timm.onnx", cfg)
    x = torch.randn(1, 3, 288, 416)
    set_sparsity(model, cfg)
    with torch.inference_mode():
        expected = model(x)
    (got,) = _run(path, x)
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)
    assert _names(path) == (["images"], ["output"])  # timm names neither; never an autogenerated 'linear_51'


@pytest.mark.slow
def test_export_restores_the_model_and_refuses_bad_input_before_writing(micro, tmp_path):
    before = micro.block_sparsity
    export_onnx(micro, (1, 3, 64, 64), tmp_path / "a.onnx", search_space(micro).uniform(0.5), optimize=False)
    assert micro.block_sparsity == before and not micro.training
    foreign = search_space(build_model("swin_t", seed=None)).uniform(0.5)
    with pytest.raises(ValueError, match="made for model"):
        export_onnx(micro, (1, 3, 64, 64), tmp_path / "b.onnx", foreign)
    swin_t = build_model("swin_t", seed=None)
    decreasing = SparsityConfig((0.0, 0.0, 0.5, 0.1, 0.0, 0.0), swin_t.signature)  # stage 3 holds three knobs
    with pytest.raises(ValueError, match="decrease|order"):
        export_onnx(swin_t, (1, 3, 64, 64), tmp_path / "c.onnx", decreasing)
    with pytest.raises(ValueError, match="channels"):
        export_onnx(micro, (1, 1, 64, 64), tmp_path / "d.onnx")
    with pytest.raises(IsADirectoryError):
        export_onnx(micro, (1, 3, 64, 64), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]  # nothing half-written


@pytest.mark.slow
def test_fp16_export_is_half_precision_and_keeps_the_fp32_windows(micro, tmp_path):
    shape = (1, 3, 64, 96)
    cfg = search_space(micro).uniform(0.5)
    before = {name: t.clone() for name, t in micro.state_dict().items()}
    path = export_onnx(micro, shape, tmp_path / "half.onnx", cfg, dtype="fp16")
    after = micro.state_dict()  # the fp32 weights, not fp16-rounded ones cast back (what the graph holds)
    assert all(after[name].dtype == t.dtype and torch.equal(after[name], t) for name, t in before.items())
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
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        export_onnx(micro, shape, tmp_path / "int8.onnx", cfg, dtype="int8")
    with pytest.raises(ValueError, match="cannot export in 'bf16'; use one of fp32, fp16"):
        export_onnx(micro, shape, tmp_path / "bf16.onnx", cfg, dtype=torch.bfloat16)
    assert not (tmp_path / "int8.onnx").exists() and not (tmp_path / "bf16.onnx").exists()


@pytest.mark.slow
def test_a_swin_v2_exports_and_runs_in_onnx_runtime(tmp_path):
    """Cosine attention, the clamped logit scale and the position-bias MLP export as plain ONNX ops."""
    model = build_model("swinv2_micro")
    shape = (1, 3, 136, 200)
    cfg = search_space(model).uniform(0.5)
    path = export_onnx(model, shape, tmp_path / "v2.onnx", cfg)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    for e, g in zip(_eager(model, cfg, x), _run(path, x)):
        np.testing.assert_allclose(g, e.numpy(), rtol=0, atol=1e-4)
    assert "TopK" in _ops(path)
