"""Profile rows as the latency predictor reads them: which rows it may fit on, the key of a
whole-model measurement, and the config, units and FLOPs behind a whole-model row."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from ..arch import Architecture, signature_blocks, unit_costs
from ..config import SearchSpace, SparsityConfig
from ..dataset.schema import stable_statistic
from ..models import build_model, list_models
from .features import config_units

# the profile columns a predictor may fit on ("auto" picks dataset.schema.stable_statistic)
STATISTICS = ("p10_ms", "min_ms", "latency_ms")


def fitted_statistic(statistic: str, df: pd.DataFrame) -> str:
    """The profile column a predictor with parameter ``statistic`` fits on ``df``."""
    if statistic == "auto":
        return stable_statistic(*df["device"].unique(), profile=True)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be 'auto' or one of {STATISTICS}, got {statistic!r}")
    return statistic


def one_device(df: pd.DataFrame, refusal: str) -> str:
    """The one ``hw`` of ``df``; ``refusal`` (e.g. "fit one predictor per device") otherwise."""
    hardware = sorted(df["hw"].unique())
    if len(hardware) != 1:
        raise ValueError(f"{refusal}; the data holds {hardware}")
    return hardware[0]


def one_runtime(models: pd.DataFrame) -> str:
    """The one runtime the whole-model rows ``models`` ran in ("eager" for none): a predictor
    predicts one runtime, since units add up differently compiled or exported."""
    runtimes = sorted(models["runtime"].unique())
    if len(runtimes) > 1:
        raise ValueError(f"the whole-model rows were timed in several runtimes {runtimes}; fit or calibrate one "
                         "predictor per runtime (select the rows of one)")
    return runtimes[0] if runtimes else "eager"


def block_kinds(rows: pd.DataFrame) -> list[str]:
    """The Swin block kinds ("v1", "v2") measured in ``rows``: what a predictor has seen, so it
    can say when it is asked about the other kind."""
    return sorted({str(kind) for kind in signature_blocks(rows["signature"].unique())})


def model_key(row: pd.Series) -> str:
    """What identifies a whole-model measurement: device, model, input, dtype and config."""
    return (f"{row.fingerprint_id}|{row.signature}|{row.img_h}x{row.img_w}|b{row.batch}|{row.dtype}|{row.config}"
            f"|{row.runtime}")


def draw_rows(models: pd.DataFrame, fraction: float, salt: str) -> pd.DataFrame:
    """About ``fraction`` of ``models`` (at least one of two or more), picked by a hash of
    each measurement's key so the choice does not depend on row order."""
    if models.empty:
        return models
    draw = models.apply(model_key, axis=1).map(
        lambda key: int(hashlib.md5((salt + key).encode()).hexdigest()[:8], 16) / 16**8)
    chosen = draw < fraction
    if not chosen.any() and len(models) > 1:
        chosen = draw == draw.min()
    return models[chosen.to_numpy()]


def runnable(layers: pd.DataFrame) -> pd.DataFrame:
    """Drop score rows timed at a sparsity that prunes nothing: ``select`` then skips scoring,
    so they time a no-op that never runs inside a model."""
    return layers[(layers["layer"] != "score") | (layers["windows_kept"] < layers["windows_total"])]


def with_mlp_ratio(models: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Whole-model rows record no MLP ratio (it is not in the signature): take it from the
    block_pair rows of the same architecture, else from the model registry."""
    ratios = df[df["layer"] == "block_pair"].groupby("signature")["mlp_ratio"].first().to_dict()
    for signature, name in {(s, n) for s, n in zip(models["signature"], models["model"]) if s not in ratios}:
        if name not in list_models():
            raise ValueError(f"cannot tell the MLP ratio of {signature!r}: include its block_pair rows")
        ratios[signature] = build_model(name, seed=None).mlp_ratio
    return models.assign(mlp_ratio=models["signature"].map(ratios).astype(float))


def row_config(row: pd.Series, arch: Architecture) -> SparsityConfig:
    """The config of a whole-model row: a JSON list of knob ratios (pair or block knobs)."""
    data = json.loads(row.config)
    if isinstance(data, dict):
        return SparsityConfig.from_dict(data)
    pairs = SearchSpace(arch.depths, arch.signature, granularity="pair").num_knobs
    return SparsityConfig(tuple(data), arch.signature, "pair" if len(data) == pairs else "block")


def model_units(models: pd.DataFrame) -> list[pd.DataFrame]:
    """Every whole-model row's units (with weights), for the baselines and calibration."""
    out = []
    for row in models.itertuples():
        arch = Architecture.from_signature(row.signature, row.mlp_ratio)
        cfg = row_config(row, arch)
        shape = (row.batch, arch.in_chans, row.img_h, row.img_w)
        out.append(config_units(arch, shape, row.dtype, cfg.block_sparsity(arch.signature, arch.depths)))
    return out


def model_gflops(models: pd.DataFrame) -> np.ndarray:
    """Analytic GFLOPs of whole-model rows (the FLOPs baseline)."""
    return np.array([(unit_costs(units)[0] * units["weight"]).sum() / 1e9 for units in model_units(models)])
