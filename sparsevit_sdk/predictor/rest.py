"""The rest of a user's whole model, as a profile measured it on its device.

A sweep of a whole model (``profile_model(model)``, ``for_device(model, input_shape, device)``)
times it as the user calls it, at sparsity 0, beside its backbone: the ``whole`` rows
next to the dense ``model`` rows of the same rounds.  What the model costs beyond its backbone
does not depend on the sparsity config, so one number per model key, input and runtime is what
a predictor keeps (``learned_.rest``) and a search adds to the backbone's predictions there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

MATCH = ("fingerprint_id", "signature", "img_h", "img_w", "batch", "dtype", "runtime")


def rest_key(model_key: str, input_shape: Sequence[int], dtype: str, runtime: str) -> str:
    """What a measured rest is valid for: the model (its key), the input ``(B, C, H, W)``, dtype and runtime."""
    b, _, h, w = input_shape
    return f"{model_key}|{b}x{h}x{w}|{dtype}|{runtime}"


def rest_table(df: pd.DataFrame, statistic: str) -> dict[str, dict[str, float]]:
    """``rest_key`` → ``{"ms", "calls", "whole_ms", "backbone_ms"}`` from the ``whole`` rows of a
    validated profile and the dense ``model`` rows measured beside them (never below 0 ms).

    ``ms`` takes ``calls`` backbones at the profiled input off the whole model; where the search
    finds calls at another shape (a multi-scale forward), it takes those off ``whole_ms`` itself
    at their own shapes (:mod:`sparsevit_sdk.search.whole`)."""
    whole = df[df["layer"] == "whole"]
    if whole.empty:
        return {}
    models = df[df["layer"] == "model"]
    dense = models[models["config"].map(lambda c: not any(json.loads(c)))]
    table = {}
    for _, row in whole.iterrows():
        match = dense[(dense[list(MATCH)] == row[list(MATCH)]).all(axis=1)]
        if match.empty:
            continue
        backbone_ms = float(match[statistic].min())
        whole_ms, calls = float(row[statistic]), int(row["index"])
        key = rest_key(row["model"], (row["batch"], 0, row["img_h"], row["img_w"]), row["dtype"], row["runtime"])
        table[key] = {"ms": max(0.0, whole_ms - calls * backbone_ms), "calls": calls, "whole_ms": whole_ms,
                      "backbone_ms": backbone_ms}
    return table
