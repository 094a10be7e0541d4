"""sparsevit-search: arguments, limits, outputs checked before searching, hw=local."""

from __future__ import annotations

import shutil

import pytest

from sparsevit_sdk import SearchResult
from sparsevit_sdk.cli import search as search_cli
from sparsevit_sdk.cli.search import main as search_main
from sparsevit_sdk.profiler.timing import num_threads

from .conftest import _bad, _no_work, _refused


@pytest.mark.slow
def test_sparsevit_search_with_hw_local_uses_the_cached_calibration(cache, tmp_path, capsys):
    from sparsevit_sdk.cli import search as search_cli

    argv = ["--model", "swin_micro", "--hw", "local", "--budget", "0.9", "--resolution", "112x112", "--population",
            "6", "--parents", "3", "--generations", "1", "--proxy-images", "1", "--no-progress", "--out",
            str(tmp_path / "r.json")]
    assert search_cli.main(argv) == 0
    assert "local (measured predictor)" in capsys.readouterr().out
    (calibration,) = cache.glob("*.json")
    written = calibration.stat().st_mtime_ns
    assert search_cli.main([*argv[:-1], str(tmp_path / "r2.json")]) == 0
    assert list(cache.glob("*.json")) == [calibration] and calibration.stat().st_mtime_ns == written  # reused


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Proxy forwards run single-threaded: on a shared 2-core machine two torch threads
    contend with other jobs and run several times slower than one."""
    with num_threads(1):
        yield


def test_cli_reports_an_infeasible_budget(tmp_path, capsys):
    code = search_main(["--model", "swin_micro", "--budget", "0.05", "--resolution", "112x112",
                        "--out", str(tmp_path / "r.json"), "--no-progress"])
    assert code == 2
    assert "fastest reachable predicted latency" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("flag", ["--proxy-images", "--batch", "--workers"])
def test_cli_refuses_counts_below_one(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        search_main(["--model", "swin_micro", flag, "0", "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert f"argument {flag}: expected a positive integer, got '0'" in capsys.readouterr().err


def test_cli_limits_and_their_message(tmp_path, capsys):
    code = search_main(["--model", "swin_micro", "--budget", "1", "--resolution", "64x64", "--population", "4",
                        "--parents", "2", "--generations", "3", "--max-evaluations", "4", "--timeout-s", "none",
                        "--patience", "2", "--proxy-images", "1", "--out", str(tmp_path / "r.json"),
                        "--no-progress"])
    assert code == 0
    assert "the limit of 4 proxy evaluations was reached" in capsys.readouterr().out
    settings = SearchResult.load(tmp_path / "r.json").settings
    assert (settings["timeout_s"], settings["max_evaluations"], settings["patience"]) == (None, 4, 2)


@pytest.mark.parametrize("flag, value, message", [
    ("--budget", "-0.5", "argument --budget: expected a fraction in (0, 1], got '-0.5'; for a budget in "
                         "milliseconds use --budget-ms"),
    ("--budget", "nan", "argument --budget: expected a fraction in (0, 1], got 'nan'"),
    ("--budget-ms", "-3", "argument --budget-ms: expected a positive number, got '-3'"),
    ("--hw", "", "argument --hw: unknown hardware ''; known targets: cpu"),
    ("--timeout-s", "0", "argument --timeout-s: expected a positive number, got '0'"),
    ("--patience", "-1", "argument --patience: expected a positive integer, got '-1'"),
])
def test_cli_search_refuses_bad_arguments_naming_the_valid_range(tmp_path, capsys, flag, value, message):
    err = _refused(search_main, ["--model", "swin_micro", flag, value, "--out", str(tmp_path / "r.json")], capsys)
    assert message in err and "budget_ms=" not in err


def test_cli_search_says_a_predictor_file_is_missing(tmp_path, capsys):
    missing = tmp_path / "missing" / "pred.json"
    err = _refused(search_main, ["--model", "swin_micro", "--hw", str(missing), "--out", str(tmp_path / "r.json")],
                   capsys)
    assert f"argument --hw: predictor file {str(missing)!r} not found" in err and "unknown hardware" not in err


@pytest.mark.parametrize("flag, kind", [("--out", "folder"), ("--out", "under-a-file"), ("--plot", "folder"),
                                        ("--checkpoint", "under-a-file")])
def test_search_refuses_its_outputs_before_searching(tmp_path, capsys, monkeypatch, flag, kind):
    monkeypatch.setattr(search_cli, "model_from", _no_work)
    monkeypatch.setattr(search_cli, "SearchSession", _no_work)
    paths = {"--out": str(tmp_path / "ok.json"), flag: str(_bad(tmp_path, kind))}
    argv = ["--model", "swin_micro", "--resolution", "64x64", *(x for item in paths.items() for x in item)]
    assert search_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparsevit-search: error: {flag}: ") and paths[flag] in err and "\n" not in err


SMALL_SEARCH = ["--model", "swin_micro", "--resolution", "64x64", "--population", "4", "--parents", "2",
                "--generations", "2", "--proxy-images", "1", "--no-progress"]


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """A search cut short after its first generation, and its checkpoint."""
    folder = tmp_path_factory.mktemp("resume")
    argv = [*SMALL_SEARCH, "--budget", "1", "--max-evaluations", "5", "--checkpoint", str(folder / "ck.json"),
            "--out", str(folder / "cut.json")]
    assert search_main(argv) == 0
    return folder / "ck.json"


def test_resume_refuses_flags_that_differ_from_the_checkpoint_listing_them(checkpointed, tmp_path, capsys):
    capsys.readouterr()
    argv = [*SMALL_SEARCH, "--resume", str(checkpointed), "--budget", "0.4", "--seed", "7", "--strategy", "random",
            "--out", str(tmp_path / "r.json")]
    assert search_main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"sparsevit-search: error: {checkpointed}: a resumed search keeps the settings it was started with, "
                   "and --seed 7 (the checkpoint's: --seed 0), --budget 0.4 (the checkpoint's: --budget 1), --strategy "
                   "random (the checkpoint's: --strategy ga) differ; leave them out (or give the checkpoint's), or "
                   "start a new search with a new checkpoint\n")
    assert not (tmp_path / "r.json").exists()
    argv = [*SMALL_SEARCH, "--resume", str(checkpointed), "--checkpoint", str(tmp_path / "other.json"), "--out",
            str(tmp_path / "r.json")]
    assert search_main(argv) == 2
    assert "a resumed search goes on writing its --resume file" in capsys.readouterr().err


def test_resume_honours_this_runs_limits_and_equal_settings(checkpointed, tmp_path):
    out = tmp_path / "r.json"
    argv = [*SMALL_SEARCH, "--resume", str(checkpointed), "--seed", "0", "--budget", "1", "--max-evaluations", "40",
            "--timeout-s", "none", "--retries", "1", "--out", str(out)]
    assert search_main(argv) == 0
    result = SearchResult.load(out)
    assert (result.seed, result.strategy, result.settings["latency_budget"]) == (0, "ga", 1.0)
    limits = (result.settings["max_evaluations"], result.settings["timeout_s"], result.settings["retries"])
    assert limits == (40, None, 1)
    assert result.stopped is None and len(result.progress) == 3  # every generation, the first from the checkpoint


def test_a_bare_resume_continues_the_checkpoint_as_profile_resume_continues_its_out(checkpointed, tmp_path, capsys):
    own = tmp_path / "ck.json"
    shutil.copy(checkpointed, own)
    out = tmp_path / "r.json"
    assert search_main([*SMALL_SEARCH, "--resume", "--checkpoint", str(own), "--out", str(out)]) == 0
    assert len(SearchResult.load(out).progress) == 3  # every generation, the first from the checkpoint
    assert search_main([*SMALL_SEARCH, "--resume", "--out", str(out)]) == 2
    assert "--resume continues the --checkpoint file" in capsys.readouterr().err
