"""Helpers of ``benchmarks/gpu_check.sh``: a pytest plugin that keeps the CUDA tests, and the
GPU estimate next to what the check measured.

    python -m pytest -p gpu_check tests/...          # with benchmarks/ on PYTHONPATH: CUDA tests only
    python benchmarks/gpu_check.py estimate --files DIR [--resolution 672 --batch 1 4 --dtype fp16 fp32]

Module-level imports are the standard library's, so loading the plugin costs nothing; the SDK is
imported where it is used, and a failure there (the SDK is being refactored) is reported in the
table, not raised past it.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

# GPU names that hardware.gpu_target (the target name inside the device's name) does not map, or
# whose nearest target needs a word of caution; any other name maps by gpu_target.
NOTES = [
    (r"h200", "h100", "no H200 target: the h100 estimate (same GH100 compute; the H200's HBM3e moves 4.8 TB/s, "
                      "the h100 spec 3.35)"),
    (r"h100.*pcie", "h100", "the h100 target is the SXM part (the PCIe card has ~25 % lower peaks)"),
    (r"a100.*40", "a100-40gb", ""),
    (r"orin", "jetson-orin", ""),  # a Jetson reports itself as "Orin"
]


# ----------------------------------------------------------------------------- pytest plugin
def _needs_cuda(item) -> bool:
    """A test marked ``cuda``, skipped-if-no-CUDA (``requires_cuda``), or named for CUDA."""
    if item.get_closest_marker("cuda") or "cuda" in item.name.lower():
        return True
    return any("cuda" in str(m.kwargs.get("reason", "")).lower() for m in item.iter_markers("skipif"))


def pytest_collection_modifyitems(config, items) -> None:
    keep = [item for item in items if _needs_cuda(item)]
    config.hook.pytest_deselected(items=[item for item in items if not _needs_cuda(item)])
    items[:] = keep


# ----------------------------------------------------------------------------- the estimate
def gpu_target(gpu_name: str) -> tuple[str | None, str]:
    """The SDK target whose estimate stands for ``gpu_name``, and a note on how near it is."""
    from sparsevit_sdk.hardware import gpu_target as sdk_target

    for pattern, target, note in NOTES:
        if re.search(pattern, gpu_name.lower()):
            return target, note
    target = sdk_target(gpu_name)
    return target, "" if target else f"no SDK target matches {gpu_name!r}; set GPU_CHECK_HW to one"


def _space(net):
    """The model's search space."""
    import sparsevit_sdk as sdk

    return sdk.search_space(net)


def _uniform(config: str) -> float | None:
    """The sparsity of a uniform config (a profile row's JSON list of knob ratios), else None."""
    ratios = set(json.loads(config))
    return ratios.pop() if len(ratios) == 1 else None


def measured_rows(files: Path) -> list[dict]:
    """Dense and uniform-0.5 latencies the check measured: kernel benchmark JSON and the profile."""
    rows = []
    for path in sorted(files.glob("kernel_*.json")):
        for r in json.loads(path.read_text()):
            rows.append({**r, "source": path.stem})
    for path in sorted(files.glob("profile/*/*.parquet")):
        import pandas as pd

        df = pd.read_parquet(path)
        df = df[df["layer"] == "model"]
        for (b, h, dtype), g in df.groupby(["batch", "img_h", "dtype"]):
            uniform = [_uniform(c) for c in g["config"]]
            dense, half = g[[u == 0.0 for u in uniform]], g[[u == 0.5 for u in uniform]]
            if len(dense) and len(half):
                rows.append(dict(source="profile", model=path.stem, resolution=int(h), batch=int(b), dtype=dtype,
                                 runtime=g["runtime"].iloc[0], dense_median_ms=float(dense["latency_ms"].iloc[0]),
                                 sparse_median_ms=float(half["latency_ms"].iloc[0]),
                                 dense_p10_ms=float(dense["p10_ms"].iloc[0]),
                                 sparse_p10_ms=float(half["p10_ms"].iloc[0])))
    return rows


def estimate(args: argparse.Namespace) -> int:
    files = Path(args.files)
    gpu = args.gpu_name
    if not gpu:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    target, note = (args.hw, "set by GPU_CHECK_HW") if args.hw else gpu_target(gpu)
    rows = measured_rows(files)
    measured = {(r["model"], r["resolution"], r["batch"], r["dtype"], r["runtime"], r["source"]): r for r in rows}
    wanted = [(args.model, args.resolution, b, d, rt, f"kernel_{rt}")
              for rt in ("eager", "compiled") for d in args.dtype for b in args.batch]
    keys = wanted + [k for k in measured if k not in wanted]

    error, cache = "", {}
    try:
        from sparsevit_sdk import LatencyPredictor, build_model
        from sparsevit_sdk.hardware import get_hardware

        if target is None:
            raise ValueError(note)
        get_hardware(target)  # a renamed target fails here, naming the known ones
        predictor = LatencyPredictor.for_hardware(target)
    except Exception as err:  # reported in the table: the measured half still stands
        error, predictor = f"{type(err).__name__}: {err}", None

    out = []
    for key in keys:
        model, res, batch, dtype, runtime, source = key
        r = measured.get(key, {})
        est = (None, None)
        if predictor is not None:
            try:
                if model not in cache:
                    net = build_model(model)
                    space = _space(net)
                    cache[model] = (net, [space.dense(), space.uniform(0.5)])
                net, configs = cache[model]
                est = tuple(float(v) for v in predictor.predict_configs(net, (batch, 3, res, res), configs,
                                                                         dtype=dtype))
            except Exception as err:  # same: say so, keep going
                error = error or f"{type(err).__name__}: {err}"
        out.append(dict(source=source, model=model, input=f"{batch}x3x{res}x{res}", dtype=dtype, runtime=runtime,
                        est_dense_ms=est[0], meas_dense_ms=r.get("dense_median_ms"), est_sparse_ms=est[1],
                        meas_sparse_ms=r.get("sparse_median_ms"), meas_dense_p10_ms=r.get("dense_p10_ms"),
                        meas_sparse_p10_ms=r.get("sparse_p10_ms"), measured_error=r.get("error", "")))

    with open(files / "estimate_vs_measured.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)

    def ms(v):
        return "—" if v is None else f"{v:.2f}"

    def ratio(a, b):
        return "—" if a is None or b is None else f"{a / b:.2f}"

    lines = [f"GPU: {gpu}; estimate: {target or 'none'}" + (f" ({note})" if note else "")
             + "; estimates are eager PyTorch from published figures; measured: median ms, uniform sparsity 0.5",
             "",
             "| source | model | input | dtype | runtime | dense est | dense meas | meas/est | s=0.5 est | s=0.5 meas "
             "| meas/est | speed-up est | speed-up meas |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for o in out:
        ed, md, es, mse = o["est_dense_ms"], o["meas_dense_ms"], o["est_sparse_ms"], o["meas_sparse_ms"]
        meas = "failed" if o["measured_error"] else ms(md)
        lines.append(f"| {o['source']} | {o['model']} | {o['input']} | {o['dtype']} | {o['runtime']} | {ms(ed)} | "
                     f"{meas} | {ratio(md, ed)} | {ms(es)} | {ms(mse)} | {ratio(mse, es)} | {ratio(ed, es)} | "
                     f"{ratio(md, mse)} |")
    if error:
        lines += ["", f"estimate failed: {error}"]
    (files / "estimate_vs_measured.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if error or not rows else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="the shipped GPU estimate next to the measured latencies")
    est.add_argument("--files", required=True, help="the check's files folder (kernel_*.json, profile/)")
    est.add_argument("--model", default="swin_t")
    est.add_argument("--resolution", type=int, default=672)
    est.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    est.add_argument("--dtype", nargs="+", default=["fp16", "fp32"])
    est.add_argument("--gpu-name", help="default: torch.cuda.get_device_name(0)")
    est.add_argument("--hw", help="SDK target to estimate with (default: from the GPU's name)")
    args = parser.parse_args(argv)
    return estimate(args)


if __name__ == "__main__":
    sys.exit(main())
