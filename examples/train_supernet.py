"""Train a supernet on the built-in demo task, show what adaptation buys, then search with it.

    python examples/train_supernet.py [--quick] [--sandwich] [--seed 0] [--save adapted.pt]

``swin_micro`` with a light segmentation head learns to label the digits on 224x224
canvases (dense training), then a copy is adapted to random per-layer sparsity
(``adapt``).  The table gives test mIoU at uniform sparsity 0, 0.3, 0.5 and 0.7 for
both: the dense-trained model loses accuracy as windows are skipped, the adapted one
much less.  Last, a short search on the adapted model, scored by val mIoU (an
``AccuracyProxy``) and the shipped ``cpu`` latency predictor, picks per-layer sparsity
for 70 % of the dense latency.  About 9 minutes on a 2-core CPU, under a minute with ``--cache`` once trained
(``--quick``: 1-2, a smoke test that trains too briefly to learn much).  Deterministic under ``--seed``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sparsevit_sdk import SearchSpace
from sparsevit_sdk.accuracy import NUM_CLASSES, AccuracyProxy, DemoRecipe, MeanIoU, train_demo_supernet
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import SearchSession

SPARSITIES = (0.0, 0.3, 0.5, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke test")
    parser.add_argument("--sandwich", action="store_true", help="adapt with the sandwich rule (dense + sparsest "
                        "+ a random config every step; about 3x the cost of a step)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="write the adapted model's state_dict here (torch.save)")
    parser.add_argument("--cache", type=Path, help="keep trained weights here and reuse them on the next run")
    args = parser.parse_args()
    start = time.perf_counter()

    recipe = (DemoRecipe.quick if args.quick else DemoRecipe)(seed=args.seed, sandwich=args.sandwich)
    net = train_demo_supernet(recipe, cache_dir=args.cache)
    if args.save:
        torch.save(net.adapted.state_dict(), args.save)
        print(f"wrote the adapted weights to {args.save} (load with torch.load(path, weights_only=True))")

    with num_threads(recipe.threads):
        test = recipe.loader("test", 16 if args.quick else 96)
        space = SearchSpace.from_model(net.adapted)
        scores = {name: AccuracyProxy(model, test, metric=MeanIoU(NUM_CLASSES), name="test mIoU")
                  for name, model in (("dense-trained", net.dense), ("adapted", net.adapted))}
        print(f"\ntest mIoU on {len(test.dataset)} canvases of {recipe.size}px "
              f"({'sandwich rule' if recipe.sandwich else 'no sandwich rule'}, seed {recipe.seed})")
        print(f"{'uniform sparsity':>16} | {'dense-trained':>13} | {'adapted':>8}")
        for s in SPARSITIES:
            cfg = space.uniform(s)
            print(f"{s:>16.1f} | {scores['dense-trained'](cfg):>13.3f} | {scores['adapted'](cfg):>8.3f}")

        # Feed a search: val mIoU on a small calibration set ranks configs, the cpu predictor prices them.
        val = AccuracyProxy(net.adapted, recipe.loader("val", 8 if args.quick else 16), metric=MeanIoU(NUM_CLASSES),
                            name="val mIoU")
        session = SearchSession(net.adapted, hw="cpu", latency_budget=0.7, proxy=val,
                                input_shape=(1, 3, recipe.size, recipe.size), seed=args.seed,
                                population=8 if args.quick else 16, parents=3 if args.quick else 5,
                                generations=1 if args.quick else 3)
        result = session.run()
        # For comparison: the uniform sparsity within the same budget that the proxy likes best.
        uniform = [space.uniform(g) for g in space.grid]
        predicted = session.predictor.predict_configs(net.adapted.backbone, uniform, session.input_shape)
        same_budget = max((c for c, ms in zip(uniform, predicted) if ms <= result.budget_ms), key=val)
        print("\n" + result.summary())
        print(f"test mIoU: searched {result.best} {scores['adapted'](result.best):.3f}; best uniform within the "
              f"budget {same_budget} {scores['adapted'](same_budget):.3f}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
