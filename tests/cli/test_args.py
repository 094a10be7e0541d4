"""What every command shares (cli/_args.py): Ctrl-C exits 130, resolutions that cannot fit are refused before any
allocation."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", ["export", "calibrate", "fit"])
def test_ctrl_c_in_every_command_says_interrupted_and_exits_130(tmp_path, monkeypatch, capsys, command):
    from sparsevit_sdk.cli import calibrate, export, fit

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    module, argv = {
        "export": (export, ["--model", "swin_micro", "--out", str(tmp_path / "m.onnx")]),
        "calibrate": (calibrate, ["--model", "swin_micro", "--resolution", "112x112"]),
        "fit": (fit, ["--profiles", str(tmp_path), "--out", str(tmp_path / "p.json")]),
    }[command]
    target = {"export": (export, "export_onnx"), "calibrate": (calibrate, "for_device"),
              "fit": (fit, "load_profiles")}[command]
    monkeypatch.setattr(*target, interrupt)
    assert module.main(argv) == 130
    assert f"sparsevit-{command}: interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["search", "calibrate", "export", "profile"])
def test_a_resolution_that_cannot_fit_is_refused_before_any_allocation(tmp_path, capsys, monkeypatch, command):
    from sparsevit_sdk import arch
    from sparsevit_sdk.cli import calibrate, export, profile, search

    monkeypatch.setattr(arch, "available_memory", lambda: 16 * 2**30)  # as on a 24 GB machine, wherever it runs
    out = tmp_path / "out"
    module, argv = {
        "search": (search, ["--model", "swin_t", "--hw", "cpu", "--out", str(out)]),
        "calibrate": (calibrate, ["--model", "swin_t"]),
        "export": (export, ["--model", "swin_t", "--out", str(out)]),
        "profile": (profile, ["--model", "swin_t", "--device", "cpu", "--out", str(out)]),
    }[command]
    assert module.main([*argv, "--resolution", "20000x20000"]) == 2
    err = capsys.readouterr().err
    assert f"sparsevit-{command}: error: input 1x3x20000x20000 needs about 107.5 GiB of activations" in err
    assert "this machine has 16.0 GiB free" in err and "a smaller" in err and not out.exists()


# ------------------------------------------- --model and the default input, the same in every command
HF_MODULE = ("import torch, transformers\nfrom sparsevit_sdk import sparsify\n\n\ndef classifier():\n"
             "    torch.manual_seed(0)\n"
             "    config = transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2],\n"
             "                                     num_heads=[1, 2, 2], window_size=4, num_labels=3)\n"
             "    return sparsify(transformers.SwinForImageClassification(config).eval())\n")


@pytest.fixture
def hf_module(tmp_path, monkeypatch):
    """``my_hf:classifier``: a tiny random-init Hugging Face Swin classifier that declares 64x64 inputs."""
    pytest.importorskip("transformers")
    (tmp_path / "my_hf.py").write_text(HF_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_hf:classifier"


def test_every_command_takes_the_models_declared_input_by_default(hf_module):
    from sparsevit_sdk.cli._args import input_shape, model_from
    from sparsevit_sdk.models import DEFAULT_INPUT_SHAPE

    name, model = model_from(hf_module)
    assert name == "my_hf.classifier" and input_shape(model, None, None) == (1, 3, 64, 64)
    assert input_shape(model, None, 4) == (4, 3, 64, 64)
    assert input_shape(model, (96, 128), None) == (1, 3, 96, 128)
    assert input_shape(model_from("swin_micro")[1], None, None) == DEFAULT_INPUT_SHAPE


def test_calibrate_takes_a_users_model_at_its_declared_input(hf_module, monkeypatch, capsys):
    from sparsevit_sdk.cli import calibrate

    seen = {}

    def stop(model, shape, *args, **kwargs):
        seen.update(model=type(model).__name__, shape=shape)
        raise KeyboardInterrupt

    monkeypatch.setattr(calibrate, "for_device", stop)
    assert calibrate.main(["--model", hf_module]) == 130
    assert seen == {"model": "SwinForImageClassification", "shape": (1, 3, 64, 64)}


@pytest.mark.slow  # one export, ~15 s
def test_export_takes_a_users_model_under_its_own_names(hf_module, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from sparsevit_sdk.cli import export

    assert export.main(["--model", hf_module, "--uniform", "0.5", "--out", str(tmp_path / "hf.onnx")]) == 0
    assert "my_hf.classifier" in capsys.readouterr().out
    graph = onnx.load(str(tmp_path / "hf.onnx")).graph
    assert [i.name for i in graph.input] == ["pixel_values"] and [o.name for o in graph.output] == ["logits"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
