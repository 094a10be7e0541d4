"""The recommended recipe end to end on the built-in demo task: adapt -> search -> fine-tune the best -> validate.

    python examples/train_supernet.py [--quick] [--seed 0] [--cache ~/.cache/sparsevit_sdk] [--save tuned.pt]

``swin_micro`` with a light segmentation head learns to label the digits on 224x224 canvases
(dense training until val mIoU stops rising), then a copy is adapted to random per-layer
sparsity with in-place distillation from its own dense forward (``adapt(..., distill=True)``).
A search scored by val mIoU and priced by ``hw="local"`` picks per-layer sparsity for 70 % of
the dense latency; the chosen config is fine-tuned with distillation (SparseViT's last step)
and its speed-up measured on the real kernels.  The table gives test mIoU at each stage.

Training the dense model takes about 25 minutes on a 2-core CPU (the plateau rule decides),
adaptation and fine-tuning about 8 more; with ``--cache`` a second run loads the weights and
takes about a minute.  ``--quick``: a 1-2 minute smoke test that trains too briefly to learn much.
Deterministic under ``--seed``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sparsevit_sdk import SearchSession, search_space
from sparsevit_sdk.accuracy import AccuracyProxy, MeanIoU
from sparsevit_sdk.demo import NUM_CLASSES, DemoRecipe, segmentation_loss, train_demo_supernet
from sparsevit_sdk.profiler import num_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--save", type=Path, help="write the fine-tuned model's state_dict here (torch.save)")
    parser.add_argument("--cache", type=Path, help="keep trained weights here and reuse them on the next run")
    args = parser.parse_args()
    start = time.perf_counter()

    recipe = (DemoRecipe.quick if args.quick else DemoRecipe)(seed=args.seed)
    net = train_demo_supernet(recipe, cache_dir=args.cache)  # 1. dense, then adapt with distillation
    model = net.adapted
    with num_threads(recipe.threads):
        test = recipe.loader("test", 16 if args.quick else 96)
        space = search_space(model)

        dense_score, score = (AccuracyProxy(m, test, metric=MeanIoU(NUM_CLASSES)) for m in (net.dense, model))

        # 2. search: val mIoU ranks configs, this CPU's calibrated predictor prices them
        val = AccuracyProxy(model, recipe.loader("val", 8 if args.quick else 16), metric=MeanIoU(NUM_CLASSES),
                            name="val mIoU")
        result = SearchSession(model, hw="local", latency_budget=0.7, proxy=val,
                               input_shape=(1, 3, recipe.size, recipe.size), seed=args.seed,
                               population=8 if args.quick else 16, parents=3 if args.quick else 5,
                               generations=1 if args.quick else 3).run()
        print("\n" + result.summary())
        rows = [("dense-trained, sparsity 0", dense_score(space.dense())),
                ("dense-trained at the searched config", dense_score(result.best)),
                ("adapted (distilled) at the searched config", score(result.best))]

        # 3. fine-tune the chosen config, distilled from the dense forward
        result.finetune(recipe.loader("train", 1_000_000, seed=recipe.seed + 2), segmentation_loss,
                        4 if args.quick else args.finetune_steps, lr=recipe.adapt_lr, seed=args.seed)
        score.cache_clear()  # proxies cache by config: the weights changed
        rows.append(("fine-tuned at the searched config", score(result.best)))
        print(f"\ntest mIoU on {len(test.dataset)} canvases of {recipe.size}px, config {result.best}")
        for name, value in rows:
            print(f"{name:>44}: {value:.3f} ({100 * value / rows[0][1]:.1f} % of dense)")

        # 4. is the speed-up real? the real kernels, dense and sparse timed side by side
        print("\n" + str(result.validate("cpu", repeats=5 if args.quick else 20)))
    if args.save:
        torch.save(model.state_dict(), args.save)  # weights only: apply the config with set_sparsity after loading
        print(f"wrote the fine-tuned weights to {args.save}; after loading, set_sparsity(model, {result.best})")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
