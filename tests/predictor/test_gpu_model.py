"""The GPU cost model fitted to published Swin figures (sparsevit_sdk/predictor/gpu_model.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsevit_sdk.arch import Architecture
from sparsevit_sdk.hardware import SPECS
from sparsevit_sdk.predictor.gpu_model import (
    TIMM_SIGNATURES,
    GpuConstants,
    GpuCostModel,
    load_published,
    published_path,
)


def uniform(arch: Architecture, s: float) -> list[list[float]]:
    return [[s] * d for d in arch.depths]


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return load_published()


def test_published_table_loads_with_sources():
    raw = load_published(fittable=False)
    assert len(raw) >= 100
    assert raw["source"].str.len().gt(10).all()
    assert set(raw["unit"]) <= {"img/s", "ms/batch"}
    assert raw["latency_ms"].gt(0).all()
    assert published_path().name == "published_gpu_latency.csv"
    fittable = load_published()
    assert {"rtx-3090", "t4", "v100"} <= set(fittable["gpu"]) and "tf32" not in set(fittable["dtype"])


def test_throughput_becomes_per_batch_latency(published):
    row = published[(published.gpu == "rtx-3090") & (published.model == "swin_tiny_patch4_window7_224")].iloc[0]
    assert row.latency_ms == pytest.approx(1000 * row.batch / row.value)


def _synthetic(truth: GpuConstants) -> pd.DataFrame:
    """Figures the model itself makes at ``truth``: small and large batches, both dtype classes
    and runtimes, Swin-T and Swin-L (whose last stage is compute-bound), so every constant shows."""
    model = GpuCostModel()
    model.constants_ = truth
    rows = []
    for gpu in ("t4", "a100", "v100"):
        for name in ("swin_tiny_patch4_window7_224", "swin_large_patch4_window7_224"):
            arch = Architecture.from_signature(TIMM_SIGNATURES[name])
            for batch in (1, 64):
                for dtype in ("fp16", "fp32"):
                    for runtime in ("eager", "compiled"):
                        ms = model.predict_ms(arch, (batch, 3, 224, 224), dtype, uniform(arch, 0.0), SPECS[gpu],
                                              runtime)
                        rows.append(dict(gpu=gpu, signature=arch.signature, img_size=224, batch=batch, dtype=dtype,
                                         runtime=runtime, latency_ms=ms))
    return pd.DataFrame(rows)


def test_fit_recovers_known_constants():
    truth = GpuConstants(0.6, 0.7, 0.35, 0.8, 12.0, 3.0)
    fitted = GpuCostModel(prior_weight=0.0).fit(_synthetic(truth)).constants_
    for name, value in vars(truth).items():
        assert getattr(fitted, name) == pytest.approx(value, rel=0.02), name


@pytest.mark.slow
def test_left_out_gpu_is_predicted_within_measured_tolerance(published):
    """Leave-one-GPU-out on the RTX 3090 (18 timm AMP figures): measured median |error| 3.4 %,
    max 18.5 % (2026-11-24); asserted with a margin."""
    train, test = published[published.gpu != "rtx-3090"], published[published.gpu == "rtx-3090"]
    model = GpuCostModel().fit(train)
    errors = []
    for row in test.itertuples():
        arch = Architecture.from_signature(row.signature)
        ms = model.predict_ms(arch, (row.batch, 3, row.img_size, row.img_size), row.dtype, uniform(arch, 0.0),
                              SPECS[row.gpu], row.runtime)
        errors.append(abs(ms / row.latency_ms - 1.0))
    assert np.median(errors) < 0.08 and max(errors) < 0.25


@pytest.mark.slow
def test_prediction_falls_with_window_sparsity(published):
    model = GpuCostModel().fit(published)
    arch = Architecture.from_signature(TIMM_SIGNATURES["swin_tiny_patch4_window7_224"])
    for gpu in ("a100", "jetson-orin"):
        ms = [model.predict_ms(arch, (8, 3, 672, 672), "fp16", uniform(arch, s), SPECS[gpu])
              for s in (0.0, 0.25, 0.5, 0.75)]
        assert all(a > b for a, b in zip(ms, ms[1:])), (gpu, ms)


def test_constants_round_trip_json(published):
    model = GpuCostModel().fit(published[published.gpu == "rtx-3090"])
    again = GpuCostModel.from_dict(model.to_dict())
    assert again.constants_ == model.constants_
    assert '"launch_us_eager"' in model.to_json()


def test_bad_input_names_the_fix(published):
    arch = Architecture.from_signature(TIMM_SIGNATURES["swin_tiny_patch4_window7_224"])
    with pytest.raises(ValueError, match="load_published"):
        GpuCostModel().fit(published.iloc[:0])
    with pytest.raises(ValueError, match="not fitted"):
        GpuCostModel().predict_ms(arch, (1, 3, 224, 224), "fp16", uniform(arch, 0.0), SPECS["a100"])
    model = GpuCostModel().fit(published[published.gpu == "rtx-3090"])
    with pytest.raises(ValueError, match="unknown dtype 'int8'.*fp16"):
        model.predict_ms(arch, (1, 3, 224, 224), "int8", uniform(arch, 0.0), SPECS["a100"])
    with pytest.raises(ValueError, match="unknown dtype 'tf32'"):
        GpuCostModel().fit(load_published(fittable=False).query("dtype == 'tf32'"))
    with pytest.raises(ValueError, match="specs="):
        GpuCostModel().fit(published.assign(gpu="mystery-gpu"))
    with pytest.raises(ValueError, match="GPUs only"):
        model.predict_ms(arch, (1, 3, 224, 224), "fp32", uniform(arch, 0.0), SPECS["cpu"])
