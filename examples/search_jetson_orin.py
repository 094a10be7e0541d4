"""Search for a device you do not have: Swin-T on an NVIDIA Jetson AGX Orin at 672x672.

    python examples/search_jetson_orin.py [--device cuda:0]

No measured Orin predictor ships with the SDK, so latencies are *estimated* from the
Orin's published specs (the result says so everywhere: ``result.estimated``).  Profile
the device with ``sparsevit-profile`` and calibrate a predictor to replace the estimate.
The search shows the Pareto front of (proxy, predicted Orin latency) from NSGA-II.

Validation then runs the sparse kernels here: the measured speed-up shows the kernels
skip real work, but comparing these milliseconds with Orin predictions would judge
nothing, and the report says so.  80 s on a quiet 2-core CPU (the reference settings,
population 100 over 20 generations, are meant for a GPU).
"""

from __future__ import annotations

import argparse

from sparsevit_sdk import SearchSession, build_model
from sparsevit_sdk.demo import default_proxy

SHAPE = (1, 3, 672, 672)  # SparseViT's high-resolution setting: most windows are background


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="where the proxy runs (cpu or cuda:N)")
    args = parser.parse_args()
    model = build_model("swin_t").to(args.device)
    # Two probe images keep a CPU run to minutes; use more (the default is 8) on a GPU.
    proxy = default_proxy(model, SHAPE, num_images=2)
    result = SearchSession(model, hw="jetson-orin", latency_budget=0.7, proxy=proxy, input_shape=SHAPE,
                           strategy="nsga2", population=16, parents=4, generations=2).run()
    print(result.summary())
    print(result.pareto[["config", "predicted_ms", "score"]].to_string(index=False))
    result.plot("jetson_orin_pareto.png")
    result.save("jetson_orin_result.json")
    print(result.validate(args.device, repeats=3, rounds=1))


if __name__ == "__main__":
    main()
