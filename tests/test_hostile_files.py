"""Numbers read from files are checked where they would crash, mislead or steer the machine:
predictor trees down to every index, predictions a device can take, thread counts from results."""

from __future__ import annotations

import copy
import json

import pytest

from sparsevit_sdk import LatencyPredictor, SearchResult, SearchSpace, build_model
from sparsevit_sdk._documents import DocumentError
from sparsevit_sdk.cli import search as search_cli

SHAPE = (1, 3, 112, 112)


@pytest.fixture(scope="module")
def shipped() -> dict:
    return LatencyPredictor.load("cpu").to_dict()


def _tree(doc: dict, unit: str = "block_pair", tree: int = 0) -> dict:
    return doc["units"][unit]["booster"]["learner"]["gradient_booster"]["model"]["trees"][tree]


def _leaf(tree: dict) -> int:
    return tree["left_children"].index(-1)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t["left_children"].__setitem__(0, -5), r"left_children' has -5 at node 0"),
    (lambda t: t["left_children"].__setitem__(0, 99999), r"left_children' has 99999 at node 0"),
    (lambda t: t["right_children"].__setitem__(0, 1), "does not make one tree"),
    (lambda t: t["split_indices"].__setitem__(0, 5000), r"splits on feature 5000; the model has 18"),
    (lambda t: t["split_conditions"].__setitem__(_leaf(t), 1e30), r"has 1e\+30 at node \d+, expected a finite value"),
    (lambda t: t["base_weights"].__setitem__(0, float("nan")), "base_weights' has nan at node 0"),
    (lambda t: t["split_type"].__setitem__(0, 1), "categorical split"),
    (lambda t: t["parents"].pop(), "has 16 entries, expected num_nodes = 17"),
    (lambda t: t["tree_param"].__setitem__("num_nodes", "x"), r"num_nodes' is 'x', expected an integer"),
])
def test_a_damaged_tree_is_refused_naming_the_unit_and_field_before_xgboost_loads_it(shipped, edit, message):
    doc = copy.deepcopy(shipped)
    edit(_tree(doc))
    with pytest.raises(DocumentError, match=r"units\.block_pair\.booster\.learner\.gradient_booster\.model\.trees"
                                            r"\[0\]\.") as err:
        LatencyPredictor.from_dict(doc, source="bad.json")
    assert err.match(message) and err.match("bad.json")


def test_booster_counts_must_match_the_predictor(shipped):
    doc = copy.deepcopy(shipped)
    doc["units"]["norm"]["booster"]["learner"]["learner_model_param"]["num_feature"] = "19"
    with pytest.raises(DocumentError, match=r"num_feature' is '19', expected 18"):
        LatencyPredictor.from_dict(doc)
    doc = copy.deepcopy(shipped)
    doc["units"]["norm"]["booster"]["learner"]["gradient_booster"]["model"]["trees"].pop()
    with pytest.raises(DocumentError, match="but the file holds 299 trees"):
        LatencyPredictor.from_dict(doc)


def test_a_damaged_predictor_file_fails_the_search_command_in_one_line(tmp_path, shipped, capsys):
    doc = copy.deepcopy(shipped)
    _tree(doc)["left_children"][0] = -5  # xgboost itself would crash the process (rc 139) at the first prediction
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    rc = search_cli.main(["--model", "swin_micro", "--hw", str(path), "--resolution", "112x112",
                          "--out", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 2 and "left_children' has -5 at node 0" in capsys.readouterr().err


def test_overheads_and_predictions_no_device_can_take_are_errors(shipped, micro):
    doc = copy.deepcopy(shipped)
    doc["overhead_ms"] = 1e300
    with pytest.raises(DocumentError, match=r"overhead_ms' is 1e\+300, expected a finite number >= 0 and <= 3.6e\+06"):
        LatencyPredictor.from_dict(doc)
    doc = copy.deepcopy(shipped)
    doc["scale"] = {kind: 1e12 for kind in doc["scale"]}
    predictor = LatencyPredictor.from_dict(doc)
    with pytest.raises(ValueError, match="not a latency .* under an hour"):
        predictor.predict_config(micro, SearchSpace.from_model(micro).dense(), SHAPE)


def test_validation_refuses_a_thread_count_from_a_file_beyond_this_machine(tmp_path, micro):
    from sparsevit_sdk.accuracy import AgreementProxy, probe_images
    from sparsevit_sdk.search import SearchSession

    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    result = SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4,
                           parents=2, generations=0, progress=False).run()
    data = result.to_dict()
    data["predictor_info"]["threads"] = [10000]
    loaded = SearchResult.from_dict(data, model=build_model("swin_micro"))
    with pytest.raises(ValueError, match=r"measured with 10000 threads .* pass threads=N"):
        loaded.validate("cpu", repeats=1, warmup=0, rounds=1)


def test_sparsity_is_saved_with_the_state_dict_and_a_dense_state_dict_is_the_sources(micro):
    timm = pytest.importorskip("timm")
    import torch

    from sparsevit_sdk import set_sparsity, sparse_backbone, sparsify

    model = build_model("swin_micro")
    model.set_sparsity(SearchSpace.from_model(model).uniform(0.5))
    fresh = build_model("swin_micro", seed=1)
    fresh.load_state_dict(model.state_dict())
    assert fresh.block_sparsity == model.block_sparsity  # the reloaded model skips the same windows
    x = torch.randn(1, 3, 112, 112)
    torch.testing.assert_close(fresh(x)[0], model(x)[0], rtol=0, atol=0)

    def tiny():
        return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, embed_dim=32,
                                 depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    source = tiny()
    sparse = sparsify(source)
    assert set(sparse.state_dict()) == set(source.state_dict())  # dense: timm's own keys, both ways
    set_sparsity(sparse, SearchSpace.from_model(sparse).uniform(0.3))
    saved = sparse.state_dict()
    again = sparsify(tiny())
    again.load_state_dict(saved)
    assert sparse_backbone(again).block_sparsity == [[0.3, 0.3]] * 4
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "layers.0.sparsity"'):
        tiny().load_state_dict(saved)  # a sparse checkpoint is not a dense timm one, and says so
    again.load_state_dict(source.state_dict())  # a dense checkpoint makes it dense
    assert sparse_backbone(again).block_sparsity == [[0.0, 0.0]] * 4
    saved["layers.0.sparsity"] = torch.tensor([2.0, 0.1])
    with pytest.raises(RuntimeError, match=r"layers.0.sparsity: expected one sparsity in \[0, 1\) per block"):
        again.load_state_dict(saved)


def test_writes_follow_a_symlink_and_remove_orphaned_temporary_files(tmp_path):
    import os
    import time

    from sparsevit_sdk._atomic import ORPHAN_AGE_S, check_writable, write_json

    real = tmp_path / "data" / "real.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert check_writable(link) == link
    write_json(link, {"new": 1})
    assert link.is_symlink() and json.loads(real.read_text()) == {"new": 1}  # the link kept, its target updated
    old, young = real.parent / ".real.json.deadbeef.tmp", real.parent / ".real.json.cafef00d.tmp"
    for orphan in (old, young):
        orphan.write_text("half a file")
    stale = time.time() - 2 * ORPHAN_AGE_S
    os.utime(old, (stale, stale))
    write_json(link, {"new": 2})
    assert not old.exists() and young.exists()  # a live writer's temporary file is never touched


@pytest.mark.parametrize(("source", "message"), [
    ('{"ratios": "0000", "signature": "s"}', "'ratios' must be a list of numbers, got '0000'"),
    ('{"ratios": [true, 0], "signature": "s"}', "'ratios' must be a list of numbers"),
    ('{"ratios": [0.5], "signature": 7}', "'signature' must be a string"),
    ("[0.5, 0.5, 0.5, 0.5]", r"needs 'ratios' and 'signature' in an object\): \[0.5"),
    ("[" * 200_000 + "]" * 200_000, "not valid JSON"),
])
def test_config_text_of_the_wrong_shape_is_refused_naming_the_field(source, message):
    from sparsevit_sdk import SparsityConfig

    with pytest.raises(ValueError, match=message):
        SparsityConfig.from_json(source)


def test_a_grid_with_repeated_values_is_refused(micro):
    with pytest.raises(ValueError, match=r"grid has repeated values \[0.5\]"):
        SearchSpace.from_model(micro, grid=[0.0, 0.5, 0.5])


@pytest.fixture(scope="module")
def saved_result(micro) -> dict:
    from sparsevit_sdk.accuracy import AgreementProxy, probe_images
    from sparsevit_sdk.search import SearchSession

    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    return SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4, parents=2,
                         generations=0, progress=False).run().to_dict()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("predicted_ms", -5, "predicted_ms is -5, expected a latency"),
    ("predicted_ms", 0, "predicted_ms is 0"),
    ("predicted_ms", "11.5", "predicted_ms is '11.5'"),
    ("predicted_ms", None, "predicted_ms is None"),
    ("score", float("nan"), "score is nan, expected a finite number"),
    ("input_shape", [1, 3, 112.5, 112], "input_shape is .* four positive integers"),
    ("best", {"ratios": [0.1, 0.1, 0.1, 0.1]}, "best is '.*', expected a config of the history"),
])
def test_a_result_file_must_agree_with_itself(tmp_path, saved_result, field, value, message):
    data = copy.deepcopy(saved_result)
    data[field] = {**data["best"], **value} if field == "best" else value
    with pytest.raises(ValueError, match=f"r.json: corrupt search result: {message}"):
        SearchResult.from_dict(data, source="r.json")


def test_a_binary_or_deeply_nested_result_file_is_refused_in_one_line(tmp_path):
    binary = tmp_path / "r.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DocumentError, match="not a sparsevit search result"):
        SearchResult.load(binary)
    binary.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DocumentError, match="nested too deep"):
        SearchResult.load(binary)


@pytest.fixture(scope="module")
def profile_rows():
    from sparsevit_sdk.profiler import SweepSettings, profile_model

    return profile_model("swin_micro", resolutions=["112x112"], grid=(0.0, 0.5), progress=False,
                         settings=SweepSettings(warmup=0, repeats=1, model_repeats=1, random_configs=0, rounds=1))


@pytest.mark.parametrize(("column", "value", "message"), [
    ("p10_ms", True, "column 'p10_ms' row 0 holds a true/false value"),
    ("batch", 1.7, "column 'batch' row 0 is 1.7, expected a whole number"),
    ("windows_kept", 10_000, "keeps 10000 of .* windows"),
    ("dtype", "fp64", r"unknown dtype values \['fp64'\]"),
])
def test_profile_rows_are_checked_by_type_and_meaning(profile_rows, column, value, message):
    from sparsevit_sdk.profiler import SchemaError, validate_frame

    rows = profile_rows.copy()
    rows[column] = rows[column].astype(object)
    rows.loc[0, column] = value
    with pytest.raises(SchemaError, match=f"p.parquet: .*{message}"):
        validate_frame(rows, "p.parquet")


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
    target = {"export": (export, "export_onnx"), "calibrate": (LatencyPredictor, "for_device"),
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


class _Pool:
    """A tiny whole model: the backbone's pooled last stage, a linear classifier."""

    def __new__(cls):
        import torch.nn as nn

        class Pool(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.backbone = build_model("swin_micro")
                self.head = nn.Linear(self.backbone.dims[-1], 4)

            def forward(self, x):
                return self.head(self.backbone(x)[-1].mean((2, 3)))
        return Pool()


@pytest.mark.parametrize(("case", "message"), [
    ("nan-images", r"the batch of step 0 holds non-finite values in input 0 .* clean the data"),
    ("huge-lr", r"parameter '.*' became non-finite or huge .* in the update before step 1 .* lower lr"),
])
def test_training_that_goes_non_finite_leaves_the_model_as_it_was(case, message):
    import torch
    import torch.nn.functional as F

    from sparsevit_sdk.accuracy import finetune

    model = _Pool()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, 64, 64)
    if case == "nan-images":
        images[0, 0, 0, 0] = float("nan")
    labels = torch.tensor([0, 1])
    lr = 1e30 if case == "huge-lr" else 1e-3
    with pytest.raises(FloatingPointError, match=message):
        finetune(model, [(images, labels)], F.cross_entropy, 3, config=SearchSpace.from_model(model.backbone).uniform(
            0.5), lr=lr, distill=False, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # every weight as it was
    with pytest.raises(ValueError, match="lr must be a positive finite number, got inf"):
        finetune(model, [(images, labels)], F.cross_entropy, 1, lr=float("inf"), progress=False)


def test_a_checkpoint_has_one_writer(tmp_path, micro):
    from sparsevit_sdk.accuracy import AgreementProxy, probe_images
    from sparsevit_sdk.search import SearchSession
    from sparsevit_sdk.search.checkpoint import CheckpointInUse, owning

    checkpoint = tmp_path / "search.ckpt"
    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    session = SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4,
                            parents=2, generations=1, progress=False, checkpoint=checkpoint)
    with owning(checkpoint):  # a search running elsewhere holds it
        with pytest.raises(CheckpointInUse, match=r"being written by another search \(\{\"pid\": \d+"):
            session.run()
    assert not checkpoint.exists()  # the refused search wrote nothing
    assert session.run().best is not None  # once the other has ended, it is this search's
    with owning(checkpoint):
        pass  # and the lock is free again after it


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_inputs_the_kernels_cannot_take_are_named_and_scripting_is_refused():
    import torch

    timm = pytest.importorskip("timm")
    from sparsevit_sdk import sparsify

    model = build_model("swin_micro").eval()
    with pytest.raises(ValueError, match=r"empty input \(1, 3, 0, 224\)"):
        model(torch.randn(1, 3, 0, 224))
    with pytest.raises(TypeError, match="the input is torch.float32 and the model's weights are torch.bfloat16"):
        build_model("swin_micro").to(torch.bfloat16)(torch.randn(1, 3, 112, 112))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts on its own: no error
        assert model(torch.randn(1, 3, 112, 112))[0].dtype == torch.bfloat16
    converted = sparsify(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, embed_dim=32,
                                           depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)))
    for scripted in (build_model("swin_micro"), converted):
        with pytest.raises(TypeError, match="cannot be compiled by torch.jit.script .* use torch.compile"):
            torch.jit.script(scripted)


def test_progress_bars_write_a_few_lines_into_a_log(capsys, micro):
    import time

    from sparsevit_sdk._progress import progress_bar
    from sparsevit_sdk.accuracy import AgreementProxy, probe_images
    from sparsevit_sdk.search import SearchSession

    for _ in progress_bar(range(300), desc="work"):
        time.sleep(0.002)  # 0.6 s: tqdm's own 0.1 s interval would write six lines or more
    assert 1 <= capsys.readouterr().err.count("work") <= 3  # stderr here is no terminal
    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4, parents=2,
                  generations=6, progress=True).run()
    assert 1 <= capsys.readouterr().err.count("search (single)") <= 3
