"""The runtimes a latency is measured in: eager PyTorch, ``torch.compile`` and ONNX Runtime.

A searched config is worth what it saves where the model runs, so timing and validation take a
``runtime``.  Each runtime's model is built once, outside the timed calls: Inductor compiles on
the first call, and the ONNX graph (fixed to the current sparsity and input shape) is exported
and loaded into an ONNX Runtime session.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

from .onnx import export_onnx

Runtime = Literal["eager", "compiled", "onnxruntime"]
RUNTIMES: tuple[str, ...] = ("eager", "compiled", "onnxruntime")


def check_runtime(runtime: str, clock: str = "wall") -> None:
    """Refuse an unknown runtime, and the thread-CPU clock where work runs on threads it cannot see."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime" and clock != "wall":
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
        return lambda: model(x)
    if runtime == "compiled":
        compiled = torch.compile(model)
        with torch.no_grad():
            compiled(x)  # Inductor compiles here
        return lambda: compiled(x)
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("runtime='onnxruntime' needs onnxruntime, an optional extra of sparsevit-sdk: "
                          "pip install -c constraints.txt 'sparsevit-sdk[onnx]'") from err
    with tempfile.TemporaryDirectory() as folder:
        graph = export_onnx(model, Path(folder) / "model.onnx", tuple(x.shape)).read_bytes()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads or torch.get_num_threads(), 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)
