"""``sparsevit-export``: a model at one sparsity config → an ONNX file.

    sparsevit-export --model swin_t --config best.json --resolution 672x672 --out swin_t_sparse.onnx
    sparsevit-export --model swin_micro --uniform 0.5 --resolution 224x224 --out micro.onnx
    sparsevit-export --model my_models:classifier --config best.json --out classifier.onnx

``--config`` is a config file (``SparsityConfig.to_json``, or the ``best`` of a search result
saved with ``SearchResult.save``); ``--uniform S`` skips the same share of windows everywhere;
neither exports the dense model.  The graph is traced for a search result's own input shape
unless ``--resolution`` or ``--batch`` overrides it (the command then says so); otherwise for
the input the model declares (else 672x672), batch 1.  ``module:function`` returns your model,
weights loaded; in Python, ``sparsevit_sdk.export_onnx(model, input_shape, path, config)``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch.nn as nn

from .._documents import read_json
from ..config import SearchSpace, SparsityConfig
from ..deploy.onnx import EXPORT_DTYPES, export_onnx
from ..sparse.convert import search_space
from ._args import MODEL_HELP, check_output, input_shape, model_from, positive_int, resolution


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsevit-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=MODEL_HELP)
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--config", metavar="JSON", help="sparsity config file, or a saved search result")
    choice.add_argument("--uniform", type=float, metavar="S", help="the same sparsity for every knob")
    p.add_argument("--resolution", type=resolution, metavar="HxW",
                   help="HxW of the input the graph is traced for (default: a search result's, else the size the "
                        "model declares, else 672x672)")
    p.add_argument("--batch", type=positive_int, help="batch size of the graph (default: a search result's, else 1)")
    p.add_argument("--dtype", choices=EXPORT_DTYPES, default="fp32",
                   help="precision of the graph (default: fp32)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    return p


def _config(args: argparse.Namespace, space: SearchSpace) -> tuple[SparsityConfig, tuple[int, ...] | None]:
    """The config to export, and the input shape ``(B, C, H, W)`` it was searched at (a search result's)."""
    if args.uniform is not None:
        return space.uniform(args.uniform), None
    if args.config is None:
        return space.dense(), None
    doc = read_json(args.config, what="config or search result", fix="give a file written by sparsevit-search "
                                                                     "--out or SparsityConfig.to_json")
    if isinstance(doc, dict) and "best" in doc:  # a search result
        shape = doc.get("input_shape")
        if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(v, int) for v in shape)):
            raise ValueError(f"{args.config}: the search result's input_shape must be [B, C, H, W], got {shape!r}; "
                             "re-run the search, or pass --resolution HxW and --batch N")
        return SparsityConfig.from_dict(doc["best"]), tuple(shape)
    return SparsityConfig.from_dict(doc), None


def _input_shape(args: argparse.Namespace, model: nn.Module, searched: tuple[int, ...] | None) -> tuple[int, ...]:
    """``--resolution`` / ``--batch``, else the search result's input, else the model's declared
    input (batch 1); a flag that overrides the result's input says so on stderr."""
    if searched is None:
        return input_shape(model, args.resolution, args.batch)
    shape = (args.batch or searched[0], searched[1], *(args.resolution or searched[2:]))
    if shape != searched:
        print(f"sparsevit-export: note: exporting for input {'x'.join(map(str, shape))}, not the "
              f"{'x'.join(map(str, searched))} the search result was searched at (--resolution / --batch)",
              file=sys.stderr)
    return shape


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_output("--out", args.out)
        name, model = model_from(args.model)
        config, searched = _config(args, search_space(model))
        shape = _input_shape(args, model, searched)
        path = export_onnx(model, shape, args.out, config, dtype=args.dtype)
    except (OSError, ValueError, KeyError) as err:
        print(f"sparsevit-export: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsevit-export: interrupted; nothing was written, run it again", file=sys.stderr)
        return 130
    print(f"wrote {path}: {name} at {list(config.ratios)}, input {'x'.join(map(str, shape))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
