"""The runtimes a latency is measured in: eager PyTorch, ``torch.compile`` and ONNX Runtime.

The one home of what a runtime is: its name (a profile row's ``runtime`` column), how it may be
timed, and how its callable is built.  A searched config is worth what it saves where the model
runs, so timing and validation take a ``runtime``.  Each runtime's model is built once, outside
the timed calls: Inductor compiles on the first call, and the ONNX graph (fixed to the current
sparsity and input shape) is exported and loaded into an ONNX Runtime session.

Importing this module loads no torch: the dataset layer reads the names, and torch, the
exporter and onnxruntime load when a callable is built.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

Runtime = Literal["eager", "compiled", "onnxruntime"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)


def allows_cpu_clock(runtime: str) -> bool:
    """Whether the ``"cpu"`` clock (the calling thread's CPU time) sees all of ``runtime``'s work:
    not ONNX Runtime's, which computes on threads of its own."""
    return runtime != "onnxruntime"


def check_runtime(runtime: str, clock: str = "wall") -> None:
    """Refuse an unknown runtime, and the thread-CPU clock where work runs on threads it cannot see."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if clock != "wall" and not allows_cpu_clock(runtime):
        raise ValueError("ONNX Runtime computes on threads of its own, which the 'cpu' clock (this thread's CPU "
                         "time) does not see; time it with clock='wall'")


def runtime_call(model: nn.Module, x: torch.Tensor, runtime: Runtime = "eager", *,
                 threads: int | None = None) -> Callable[[], object]:
    """``model(x)`` in ``runtime``, ready to be timed (compiled or exported here, not in the calls).

    A compiled or exported model runs the sparsity ``model`` has now; eager follows later
    changes.  ``threads`` sizes ONNX Runtime's intra-op pool (PyTorch's is set by the caller).
    """
    check_runtime(runtime)
    if runtime == "eager":
        return functools.partial(model, x)
    import torch

    if runtime == "compiled":
        compiled = torch.compile(model)
        with torch.inference_mode():  # the mode timing runs in: compiled once, for it
            model(x)  # eager first: the stages' window layouts are cached, so Dynamo sees them fixed
            compiled(x)  # Inductor compiles here
        return functools.partial(compiled, x)
    return _onnxruntime_call(model, x, threads or torch.get_num_threads())


def _onnxruntime_call(model: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], object]:
    """Export ``model`` at ``x``'s shape and load the graph into a CPU session of ``threads`` threads."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("runtime='onnxruntime' needs onnxruntime, an optional extra of sparsevit-sdk: "
                          "pip install -c constraints.txt 'sparsevit-sdk[onnx]'") from err
    from .deploy.onnx import export_onnx  # the exporter loads torch.export: only for this runtime

    with tempfile.TemporaryDirectory() as folder:  # without onnxscript's optimizer: a third faster to export, and
        # ONNX Runtime optimizes the graph it loads itself (swin_micro: the same outputs and speed measured either way)
        graph = export_onnx(model, tuple(x.shape), Path(folder) / "model.onnx", optimize=False).read_bytes()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only: its optimizer's 'could not constant fold CastLike' notes are noise
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}
    return functools.partial(session.run, None, feed)
