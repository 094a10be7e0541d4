"""Search: per-knob sparsity under a latency budget (DEAP), validated on the real kernels.

    result = SearchSession(model, hw="jetson-orin", latency_budget=0.7).run()
    result.best, result.predicted_ms, result.pareto, result.history
    print(result.validate("cpu")); result.plot("pareto.png"); result.save("result.json")

Scale out with ``executor="process"`` / ``"ray"``; ``checkpoint=path`` and ``SearchSession.resume(path, model)``.
"""

from .checkpoint import SearchState, read_checkpoint, write_checkpoint
from .engine import EvolutionSearch
from .evaluation import Failure
from .executors import ProcessExecutor, RayExecutor, resolve_executor
from .outcome import EvolutionOutcome, pareto_front
from .protocols import Executor
from .result import SearchResult
from .session import SearchSession
from .settings import SearchSettings, resolve_budget
from .validation import ValidationReport

__all__ = [
    "EvolutionOutcome", "EvolutionSearch", "Executor", "Failure", "ProcessExecutor", "RayExecutor", "SearchResult",
    "SearchSession", "SearchSettings", "SearchState", "ValidationReport", "pareto_front", "read_checkpoint",
    "resolve_budget", "resolve_executor", "write_checkpoint",
]
