"""How right are the GPU estimates?  Leave one GPU out of the published figures.

The cost model of ``sparsevit_sdk/predictor/gpu_model.py`` is fitted to the published Swin
latencies and throughputs in ``predictors/published_gpu_latency.csv`` (every row names its
source).  Here each GPU's figures are left out in turn: fit on the others, predict them,
and report the error per GPU.  Then what the model fitted on all figures predicts for
Swin-T at 672x672 on the GPU targets, dense and at uniform 50 % window sparsity.

    python benchmarks/gpu_estimates.py [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _results import now_utc, write_section

from sparsevit_sdk import LatencyPredictor, build_model, search_space
from sparsevit_sdk.arch import Architecture
from sparsevit_sdk.hardware import SPECS
from sparsevit_sdk.predictor import GpuCostModel, load_published, published_model

SECTION = "## GPU estimates from published measurements"


def predicted(model: GpuCostModel, row) -> float:
    arch = Architecture.from_signature(row.signature)
    dense = [[0.0] * d for d in arch.depths]
    return model.predict_ms(arch, (row.batch, arch.in_chans, row.img_size, row.img_size), row.dtype, dense,
                            SPECS[row.gpu], row.runtime)


def leave_one_gpu_out() -> list[str]:
    figures = load_published()
    lines = ["| GPU left out | figures | their runtimes, dtypes | median abs error | max abs error |",
             "|---|---:|---|---:|---:|"]
    for gpu, held in figures.groupby("gpu"):
        model = GpuCostModel().fit(figures[figures.gpu != gpu])
        error = np.array([abs(predicted(model, row) / row.latency_ms - 1) for row in held.itertuples()])
        kinds = ", ".join(sorted(set(held.runtime) | set(held.dtype)))
        lines.append(f"| {gpu} | {len(held)} | {kinds} | {100 * np.median(error):.0f} % | {100 * error.max():.0f} % |")
    return lines


def swin_t_672() -> list[str]:
    net = build_model("swin_t")
    space = search_space(net)
    shape = (1, 3, 672, 672)
    lines = ["| target | dtype | dense ms | uniform 0.5 ms | speed-up |", "|---|---|---:|---:|---:|"]
    for name, spec in SPECS.items():
        if spec.kind != "gpu":
            continue
        predictor = LatencyPredictor.for_hardware(name)
        dense, sparse = predictor.predict_configs(net, shape, [space.dense(), space.uniform(0.5)])
        lines.append(f"| {name} | {predictor.learned_.dtype} | {dense:.2f} | {sparse:.2f} | {dense / sparse:.2f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, help="write the section into this markdown file")
    args = parser.parse_args()
    model = published_model()
    raw = load_published(fittable=False)
    constants = ", ".join(f"{k} {v:.3g}" for k, v in vars(model.constants_).items())
    lines = [SECTION, "", f"Produced by `python benchmarks/gpu_estimates.py` on {now_utc()} (no GPU needed: it "
             f"reads published figures). {len(raw)} figures recorded, {model.fit_report_['figures']} usable (a dtype "
             "the model prices, a GPU with specs): timm's benchmark CSVs (RTX 3090, 4090, 5090; AMP, eager and "
             "compiled), NVIDIA FasterTransformer's Swin tables (T4, A10, A100 40GB; TorchScript rows), the Swin "
             "paper's V100 throughputs. Fitted on all of them: " + constants + f"; in-sample median abs error "
             f"{100 * model.fit_report_['median_abs_error']:.0f} %.", "",
             "### Leave one GPU out", "", *leave_one_gpu_out(), "",
             "### Swin-T 672x672, batch 1, eager, estimated", "", *swin_t_672(), ""]
    text = "\n".join(lines)
    print(text)
    if args.results:
        write_section(text, args.results)


if __name__ == "__main__":
    main()
