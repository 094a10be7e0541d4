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

import torch
import torch.nn as nn

from ..dataset.schema import RUNTIMES, Runtime
from ..profiler.timing import check_runtime
from .onnx import export_onnx

__all__ = ["RUNTIMES", "Runtime", "check_runtime", "runtime_call"]

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
