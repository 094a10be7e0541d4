"""profiler/remote.py, a fleet of two devices: two Ray nodes (each its own `ray start`) advertising two device
resources (the same CPU at 1 and at 2 threads: two device fingerprints) profile in parallel into one --out, land in
two datasets, and sparsevit-fit --per-fingerprint builds one predictor per fingerprint; wrong fleet arguments are
refused before any measuring; a head lost mid-sweep is named within seconds, with how to resume."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sparsevit_sdk import LatencyPredictor
from sparsevit_sdk.cli.fit import main as fit_main
from sparsevit_sdk.cli.profile import main as profile_main
from sparsevit_sdk.dataset import load_profiles, read_fingerprint
from sparsevit_sdk.profiler import SweepSettings
from sparsevit_sdk.profiler.remote import profile_fleet

from ..conftest import CLUSTER_CPUS, CLUSTER_NODES, RAY

ray = pytest.importorskip("ray")
pytestmark = RAY  # on the worker of the session's cluster; the last test kills its head

DEVICES = {"cpu-1t": 1, "cpu-2t": 2}  # the resource each node advertises -> the threads it is profiled with


@pytest.fixture(scope="module")
def fleet(ray_cluster):
    """The session's 2-node cluster (conftest): a head and a second node, each advertising one device (2 CPUs
    each: the 2-thread sweep reserves 2)."""
    assert [set(node) & set(DEVICES) for node in CLUSTER_NODES] == [{hw} for hw in DEVICES] and CLUSTER_CPUS == 2
    return ray_cluster


def profile(out, *extra: str) -> int:
    return profile_main(["--ray-address", "auto", "--model", "swin_micro", "--resolution", "64x64", "--quick",
                         "--configs", "1", "--out", str(out), *extra])


@pytest.mark.slow
def test_two_devices_profile_in_parallel_into_two_datasets_and_two_predictors(fleet, tmp_path, capsys):
    flags = [f"--hw={hw}" for hw in DEVICES] + [f"--threads={n}" for n in DEVICES.values()]
    assert profile(tmp_path / "fleet", *flags) == 0
    assert capsys.readouterr().out.count("new measurements") == 2
    sidecars = {hw: read_fingerprint(tmp_path / "fleet" / hw) for hw in DEVICES}
    assert {hw: fp["threads"] for hw, fp in sidecars.items()} == DEVICES
    ids = {hw: fp["fingerprint_id"] for hw, fp in sidecars.items()}
    assert len(set(ids.values())) == 2
    assert all(len(load_profiles(tmp_path / "fleet" / hw)) for hw in DEVICES)

    out = tmp_path / "predictors"
    assert fit_main(["--profiles", str(tmp_path / "fleet"), "--per-fingerprint", "--out", str(out),
                     "--n-estimators", "20"]) == 0
    for hw, fp_id in ids.items():
        assert LatencyPredictor.load(out / f"{hw}.json").learned_.fingerprint["fingerprint_id"] == fp_id
    assert fit_main(["--profiles", str(tmp_path / "fleet"), "--out", str(tmp_path / "one.json")]) == 2
    assert "2 device fingerprints" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--hw=cpu-1t", "--hw=cpu-2t", "--threads=1", "--threads=2", "--threads=3"],
     "--threads is given 3 times for 2 --hw; give it once"),
    (["--hw=cpu-1t", "--hw=cpu-2t", "--device=cpu", "--device=cpu", "--device=cuda:0"],
     "--device is given 3 times for 2 --hw"),
    (["--hw=cpu-1t", "--hw=cpu-1t"], "--hw names a device twice"),
    (["--hw=cpu-1t", "--threads=3"], "the sweep on 'cpu-1t' needs 3 CPUs (--threads) and 0 GPUs (--device), but the "
                                     "node advertising it has 2 CPUs, 0 GPUs; lower --threads"),
    (["--hw=cpu-2t", "--device=cuda:0"], "needs 1 CPUs (--threads) and 1 GPUs (--device)"),
    (["--hw=cpu-1t", "--hw=jetson-orin", "--hw=pi5"],
     "advertises the resource 'jetson-orin' or 'pi5'; on each device, join the cluster with `ray start"),
])
@pytest.mark.slow  # the 2-node cluster they are refused on starts in ~5 s
def test_wrong_fleet_arguments_are_refused_before_measuring(fleet, tmp_path, capsys, flags, message):
    assert profile(tmp_path, *flags) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.mark.slow
def test_a_failing_device_keeps_the_other_devices_rows(fleet, tmp_path):
    sweep = dict(resolutions=["64x64"], settings=SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=1),
                 grid=(0.0, 0.5))
    with pytest.raises(ValueError, match="'cpu' or 'cuda:N'"):
        profile_fleet("swin_micro", {"cpu-1t": {}, "cpu-2t": {"device": "tpu"}}, out=tmp_path, **sweep)
    assert len(load_profiles(tmp_path / "cpu-1t")) > 0 and not (tmp_path / "cpu-2t").exists()


def test_a_fleet_needs_a_cluster_and_per_fingerprint_its_own_flags(tmp_path, capsys):
    assert profile_main(["--hw=a", "--hw=b", "--model", "swin_micro", "--out", str(tmp_path)]) == 2
    assert "several --hw profile a fleet of device nodes: add --ray-address" in capsys.readouterr().err
    assert fit_main(["--profiles", "profiles/cpu", "--per-fingerprint", "--fingerprint", "abc", "--out",
                     str(tmp_path)]) == 2
    assert "leave out --fingerprint, --mix-fingerprints and --plot" in capsys.readouterr().err


def sweeping(pid: int) -> bool:
    """Whether process ``pid`` is a Ray worker running the fleet's sweep (Ray titles it after the task)."""
    try:
        return "_sweep_on_node" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


@pytest.mark.slow  # last: it kills the fleet's head
def test_losing_the_head_mid_sweep_is_named_with_how_to_resume(fleet, tmp_path):
    head, device = fleet.nodes

    def kill_head_once_sweeping() -> None:
        deadline = time.monotonic() + 120
        while not any(map(sweeping, device.processes())) and time.monotonic() < deadline:
            time.sleep(0.05)
        head.kill()

    killer = threading.Thread(target=kill_head_once_sweeping, daemon=True)
    killer.start()
    sweep = dict(resolutions=["64x64", "96x96"], settings=SweepSettings(warmup=1, repeats=5, model_repeats=5,
                                                                     random_configs=4), grid=(0.0, 0.25, 0.5, 0.75))
    with pytest.raises(ConnectionError, match=rf"the Ray cluster at \S+:{fleet.port} was lost while profiling 'cpu-2t' "
                                              r"\(its GCS does not answer\); the rows of no device are merged into "
                                              r".*rerun with resume=True \(--resume\)"):
        profile_fleet("swin_micro", {"cpu-2t": {"threads": 2}}, out=tmp_path, **sweep)
    killer.join()
    assert not ray.is_initialized()  # disconnected: Ray does not end this process when it gives up on the GCS
