"""Bring up a device the SDK has never seen: profile it, fit a predictor, search, validate.

    python examples/profile_and_fit_new_device.py [--device cpu|cuda:N] [--hw my-device] [--out runs/]

1. ``profile_model`` times every layer unit of ``swin_micro`` at 224 and 448 px and a few
   dozen whole-model configs on this device (what ``sparsevit-profile`` does).
2. A ``LatencyPredictor`` is fitted on that dataset and judged on whole-model configs it
   did not see (what ``sparsevit-fit`` does), next to a few-shot calibration of the shipped
   ``cpu`` predictor from 10 of the same measurements (for when a full profile is too slow).
3. The search runs against the fitted predictor, and the winner is validated here on the
   real sparse kernels: measured vs predicted, on the device the predictor was fitted on.

About 90 s on a 2-core CPU (three rounds of the sweep; each row keeps its quietest).  On a
CPU, timing is single-threaded with the thread's CPU clock, which other jobs on a shared
machine barely disturb; on a GPU, CUDA events.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsevit_sdk import LatencyPredictor, SearchSession, build_model
from sparsevit_sdk.predictor import format_report
from sparsevit_sdk.profiler import SweepSettings, profile_model

RESOLUTIONS = ("224x224", "448x448")
SEARCH_SHAPE = (1, 3, 448, 448)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hw", default="my-device", help="name to file the measurements under")
    parser.add_argument("--out", default="runs", help="folder for the dataset, predictor and result")
    args = parser.parse_args()
    out = Path(args.out)
    cpu = args.device == "cpu"

    settings = SweepSettings(warmup=1, repeats=5, model_repeats=5, random_configs=12, rounds=3)
    df = profile_model("swin_micro", resolutions=RESOLUTIONS, device=args.device, hw=args.hw,
                       out=out / "profiles", settings=settings, clock="cpu" if cpu else "wall")
    print(f"profiled {len(df)} rows ({(df['layer'] == 'model').sum()} whole models) into {out / 'profiles'}")

    predictor = LatencyPredictor().fit(df)
    predictor.save(out / "predictors" / f"{args.hw}.json")
    print("\nfitted predictor, whole-model configs it was not fitted on:")
    print(format_report({"xgboost (per layer)": predictor.learned_.metrics["xgboost"],
                         "lookup table": predictor.learned_.metrics["lookup"]}))
    if cpu:
        few = df[df["layer"] == "model"].sample(10, random_state=0)
        calibrated = LatencyPredictor.calibrate(LatencyPredictor.load("cpu"), few)
        print("\nshipped cpu predictor calibrated on 10 of these whole models, judged on the others:")
        print(format_report({"calibrated": calibrated.evaluate(df.drop(few.index))["xgboost"]}))

    model = build_model("swin_micro").to(args.device)
    result = SearchSession(model, hw=predictor, latency_budget=0.6, input_shape=SEARCH_SHAPE,
                           population=24, parents=6, generations=4).run()
    print(result.summary())
    print(result.validate(args.device, repeats=10))
    result.save(out / f"{args.hw}_result.json")


if __name__ == "__main__":
    main()
