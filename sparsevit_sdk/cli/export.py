"""``sparsevit-export``: a built-in model at one sparsity config → an ONNX file.

    sparsevit-export --model swin_t --config best.json --resolution 672x672 --out swin_t_sparse.onnx
    sparsevit-export --model swin_micro --uniform 0.5 --resolution 224x224 --out micro.onnx

``--config`` is a config file (``SparsityConfig.to_json``, or the ``best`` of a search result
saved with ``SearchResult.save``); ``--uniform S`` skips the same share of windows everywhere;
neither exports the dense model.  Load your own weights in Python and call
``sparsevit_sdk.deploy.export_onnx(model, input_shape, path, config)``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._documents import read_json
from ..config import SearchSpace, SparsityConfig
from ..deploy.onnx import EXPORT_DTYPES, export_onnx
from ..models import build_model, list_models
from ..profiler import parse_resolution
from ..sparse.convert import search_space
from ._args import check_output, positive_int


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsevit-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=list_models(), help="built-in model (random weights)")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--config", metavar="JSON", help="sparsity config file, or a saved search result")
    choice.add_argument("--uniform", type=float, metavar="S", help="the same sparsity for every knob")
    p.add_argument("--resolution", default="224x224", help="HxW of the input the graph is traced for")
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--dtype", choices=EXPORT_DTYPES, default="fp32",
                   help="precision of the graph (default: fp32)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    return p


def _config(args: argparse.Namespace, space: SearchSpace) -> SparsityConfig:
    if args.uniform is not None:
        return space.uniform(args.uniform)
    if args.config is None:
        return space.dense()
    doc = read_json(args.config, what="config or search result", fix="give a file written by sparsevit-search "
                                                                     "--out or SparsityConfig.to_json")
    return SparsityConfig.from_dict(doc.get("best", doc) if isinstance(doc, dict) else doc)  # a result: "best"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_output("--out", args.out)
        model = build_model(args.model)
        h, w = parse_resolution(args.resolution)
        config = _config(args, search_space(model))
        path = export_onnx(model, (args.batch, model.in_chans, h, w), args.out, config, dtype=args.dtype)
    except (OSError, ValueError, KeyError) as err:
        print(f"sparsevit-export: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsevit-export: interrupted; nothing was written, run it again", file=sys.stderr)
        return 130
    print(f"wrote {path}: {args.model} at {list(config.ratios)}, input {args.batch}x{model.in_chans}x{h}x{w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
