"""How well does calibration reproduce whole models it was not fitted on, when its rows are recorded, not live?

For each recorded CPU profile (``profiles/cpu``, ``profiles/intel-xeon-amx`` and, when the checkout has it,
``../shared/profiles/amd-epyc-avx512``) and swin_micro at 224/448/672: calibrate another CPU's shipped predictor
on the rows ``for_device`` measures (every unit, the 9 uniform whole models and 6 random ones), judge on the
other whole models at that resolution.  ``busy`` multiplies 4 of the 15 whole models by 1.15-1.4 and an eighth
of the units by 1.1-1.4, as a neighbour on the core would.  Separates the fit from the live measuring.

    python benchmarks/calibration_recorded.py
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sparsevit_sdk import LatencyPredictor
from sparsevit_sdk.dataset import load_profiles

ROOT = Path(__file__).resolve().parent.parent
DEVICES = {"cpu": ROOT / "profiles/cpu", "intel-xeon-amx": ROOT / "profiles/intel-xeon-amx",
           "amd-epyc-avx512": ROOT.parent / "shared/profiles/amd-epyc-avx512"}
BASE = {"cpu": "intel-xeon-amx", "intel-xeon-amx": "cpu", "amd-epyc-avx512": "intel-xeon-amx"}
COLUMNS = ["p10_ms", "min_ms", "latency_ms", "p90_ms"]


def busy(rows: pd.DataFrame) -> pd.DataFrame:
    rows, rng = rows.copy(), np.random.default_rng(0)
    models, units = rows.index[rows.layer == "model"], rows.index[rows.layer != "model"]
    hit = rng.choice(models, 4, replace=False)
    rows.loc[hit, COLUMNS] *= rng.uniform(1.15, 1.4, (4, 1))
    hit = rng.choice(units, len(units) // 8, replace=False)
    rows.loc[hit, COLUMNS] *= rng.uniform(1.1, 1.4, (len(hit), 1))
    return rows


def case(rows: pd.DataFrame, base: LatencyPredictor, noisy: bool) -> dict:
    models = rows[rows.layer == "model"]
    uniform = models[models.config.map(lambda c: len(set(json.loads(c))) == 1)]
    others = models.drop(uniform.index)
    sampled = others.sample(6, random_state=0)
    calibration = pd.concat([rows[rows.layer != "model"], uniform, sampled])
    calibrated = LatencyPredictor.calibrate(base, busy(calibration) if noisy else calibration)
    held = others.drop(sampled.index).reset_index(drop=True)
    ratio = held.p10_ms.to_numpy() / calibrated.predict_models(held, rows)
    seen = pd.concat([uniform, sampled]).reset_index(drop=True)
    in_sample = seen.p10_ms.to_numpy() / calibrated.predict_models(seen, rows)
    return {"held_within_10": 100 * np.mean(np.abs(ratio - 1) <= 0.1), "held_mape": 100 * np.mean(np.abs(ratio - 1)),
            "in_sample_mape": 100 * np.mean(np.abs(in_sample - 1))}


def main() -> None:
    logging.disable(logging.WARNING)
    out = []
    for device, path in DEVICES.items():
        if not path.is_dir():
            continue
        rows, base = load_profiles(path), LatencyPredictor.load(BASE[device])
        for resolution in (224, 448, 672):
            at = rows[(rows.model == "swin_micro") & (rows.img_h == resolution)]
            for noisy in (False, True):
                out.append({"device": device, "resolution": resolution, "rows": "busy" if noisy else "clean",
                            **case(at, base, noisy)})
    table = pd.DataFrame(out)
    print(table.round(1).to_string(index=False))
    print(table.groupby("rows")[["held_within_10", "held_mape", "in_sample_mape"]].mean().round(2).to_string())


if __name__ == "__main__":
    main()
