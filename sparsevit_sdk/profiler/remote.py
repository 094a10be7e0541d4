"""Profiling fleet: run the sweep on the Ray cluster node that holds a device.

Each device node joins the cluster advertising its name as a custom resource
(``ray start --address HEAD --resources '{"jetson-orin": 1}'``).  The sweep runs as one Ray
task that needs that resource, so it lands on that node, and only one sweep at a time
measures the device.  The task writes into a scratch folder there; its rows and fingerprint
come back and are merged into the local dataset, with the same refusal to mix devices as a
local run.  :func:`profile_fleet` starts one such task per device before waiting for any, so
a fleet measures in parallel, each device into its own dataset.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .._ray import heartbeat_address, init_ray, require_ray, wait_ready
from ..dataset.files import check_hw, claim_folder, dataset_path, merge_rows, read_fingerprint, read_frame
from .sweep import profile_model


def _sweep_on_node(name: str, hw: str, known: tuple[pd.DataFrame, dict] | None,
                   kwargs: dict[str, Any]) -> tuple[pd.DataFrame, dict]:
    """Ray task body: the sweep into a scratch folder (seeded with ``known`` rows, which
    ``resume`` skips); returns the new rows and the node's fingerprint."""
    with tempfile.TemporaryDirectory() as tmp:
        if known is not None:
            claim_folder(Path(tmp) / hw, known[1])  # refuses a node that is not the device of the local rows
            merge_rows(dataset_path(tmp, hw, name), known[0])
        rows = profile_model(name, hw=hw, out=tmp, progress=False, **kwargs)
        return rows, read_fingerprint(Path(tmp) / hw)


def profile_on_ray(name: str, *, hw: str, out: str | os.PathLike, address: str | None = None,
                   device: str = "cpu", threads: int | None = None, resume: bool = False,
                   **kwargs: Any) -> pd.DataFrame:
    """:func:`profile_model` of built-in model ``name`` on the node advertising resource ``hw``
    of the Ray cluster at ``address`` (default: the one this process is connected to, else a
    new local one); rows are merged into ``dataset_path(out, hw, name)`` here.  Returns the new rows.

    ``device`` is as seen on the node (a GPU task gets one GPU, which Ray shows as
    ``cuda:0``); the task reserves ``threads`` CPUs (default 1).  With ``resume``, the local
    rows of this model go along and are not measured again.
    """
    return profile_fleet(name, {hw: {"device": device, "threads": threads}}, out=out, address=address,
                         resume=resume, **kwargs)[hw]


def profile_fleet(name: str, devices: Mapping[str, Mapping[str, Any]], *, out: str | os.PathLike,
                  address: str | None = None, resume: bool = False, **kwargs: Any) -> dict[str, pd.DataFrame]:
    """:func:`profile_on_ray` on several device nodes at once, in parallel.

    ``devices`` maps each node's resource name (its dataset's ``hw``) to its own sweep settings
    over the common ``kwargs``, e.g. ``{"orin": {"device": "cuda:0"}, "pi5": {"threads": 4}}``.
    Every sweep is submitted before any is awaited; each device's rows are merged into
    ``dataset_path(out, hw, name)`` as it finishes, so one failing device keeps the others' rows
    (its error is raised once all are in).  Returns the new rows per device.  A cluster whose head
    stops answering raises a ConnectionError within seconds, naming what was merged and how to resume.
    """
    feature = "profiling through Ray (--ray-address)"
    ray = require_ray(feature)
    for hw in devices:
        check_hw(hw)
    if not ray.is_initialized():
        init_ray(address, feature)
    sweeps = {hw: {"device": "cpu", "threads": None, **kwargs, **settings} for hw, settings in devices.items()}
    _check_placeable(ray, {hw: _needs(hw, sweep) for hw, sweep in sweeps.items()})
    jobs = {hw: _submit(ray, name, hw, out, resume, sweep) for hw, sweep in sweeps.items()}
    heartbeat = heartbeat_address(ray, address)
    new, first_error = {}, None
    try:
        for hw, (ref, path) in jobs.items():
            try:
                wait_ready(ray, ref, heartbeat)
            except ConnectionError as err:
                ray.shutdown()  # else Ray ends this process once its own connection to the GCS gives up
                raise ConnectionError(
                    f"the Ray cluster at {heartbeat} was lost while profiling {hw!r} (its GCS does not answer); the "
                    f"rows of {', '.join(map(repr, new)) or 'no device'} are merged into {out}: start the cluster "
                    "again and rerun with resume=True (--resume) to measure only what is missing") from err
            try:
                rows, fingerprint = ray.get(ref)
            except Exception as err:  # the others' rows are still merged; this error is raised after them
                first_error = first_error or err
                continue
            claim_folder(path.parent, fingerprint)
            if len(rows):
                merge_rows(path, rows)
            new[hw] = rows
    except KeyboardInterrupt:
        for ref, _ in jobs.values():
            ray.cancel(ref, force=True)
        raise
    if first_error is not None:
        raise first_error
    return new


def _needs(hw: str, sweep: dict[str, Any]) -> dict[str, float]:
    """What the sweep's task reserves on its node: the device's resource, ``threads`` CPUs, a GPU for cuda."""
    return {hw: 1, "CPU": sweep["threads"] or 1, "GPU": 1 if str(sweep["device"]).startswith("cuda") else 0}


def _check_placeable(ray: Any, needs: dict[str, dict[str, float]]) -> None:
    """A ValueError naming the fix for a sweep no live node can run (Ray would wait for such a node forever)."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    missing = [hw for hw in needs if not any(r.get(hw, 0) >= 1 for r in nodes)]
    if missing:
        joins = "; ".join(f"`ray start --address <head address> --resources '{{\"{hw}\": 1}}'`" for hw in missing)
        raise ValueError(f"no node of the Ray cluster advertises the resource {' or '.join(map(repr, missing))}; on "
                         f"each device, join the cluster with {joins}")
    for hw, need in needs.items():
        if not any(all(r.get(k, 0) >= v for k, v in need.items()) for r in nodes):
            have = [f"{r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs" for r in nodes if r.get(hw, 0) >= 1]
            raise ValueError(f"the sweep on {hw!r} needs {need['CPU']:g} CPUs (--threads) and {need['GPU']:g} GPUs "
                             f"(--device), but the node advertising it has {' / '.join(have)}; lower --threads or "
                             "pick --device cpu, or restart that node's `ray start` with more --num-cpus / --num-gpus")


def _submit(ray: Any, name: str, hw: str, out: str | os.PathLike, resume: bool,
            sweep: dict[str, Any]) -> tuple[Any, Path]:
    """Start the sweep of ``name`` on the node advertising ``hw``; its task and the local dataset path."""
    path = dataset_path(out, hw, name)
    folder_fp = read_fingerprint(path.parent)
    known = (read_frame(path), folder_fp) if resume and path.exists() and folder_fp is not None else None
    need = _needs(hw, sweep)
    task = ray.remote(_sweep_on_node).options(resources={hw: 1}, num_cpus=need["CPU"], num_gpus=need["GPU"],
                                              max_retries=0)
    return task.remote(name, hw, known, {**sweep, "resume": resume}), path
