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
