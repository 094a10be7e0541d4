"""Quickstart: find per-layer window sparsity for a latency budget, then prove the speed-up.

    python examples/quickstart.py

A small Swin (``swin_micro``, random weights) at 224x224 on this CPU: ``hw="local"``
calibrates the shipped predictor nearest this CPU to it (a few seconds of measuring at this
model and input, cached for the next run), the search predicts latency with it and, given
no proxy, scores each config by how closely its outputs agree with the dense model's.  Then
the best config runs on the real sparse kernels next to the dense model.  About a minute on
a 2-core CPU.
"""

from __future__ import annotations

from sparsevit_sdk import SearchSession, build_model


def main() -> None:
    model = build_model("swin_micro")
    # The default strategy="ga" with its reference population=100, generations=20 would take longer; a smaller
    # GA keeps this quick (strategy="nsga2" or "random", or a SearchStrategy object of your own, plug in the same way).
    result = SearchSession(model, hw="local", latency_budget=0.7, input_shape=(1, 3, 224, 224), strategy="ga",
                           population=24, parents=6, generations=4).run()
    print(result.summary())
    print(result.validate("cpu"))
    result.save("quickstart_result.json")
    result.plot("quickstart_pareto.png")
    print("wrote quickstart_result.json and quickstart_pareto.png")


if __name__ == "__main__":
    main()
