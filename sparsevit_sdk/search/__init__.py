"""Search: per-knob sparsity under a latency budget, validated on the real kernels.

    result = SearchSession(model, hw="jetson-orin", latency_budget=0.7).run()   # strategy="ga" (DEAP)
    SearchSession(model, hw="cpu", strategy="nsga2", population=32)            # a built-in, by name
    SearchSession(model, hw="cpu", strategy=MyStrategy())                      # a SearchStrategy of your own
    result.best, result.predicted_ms, result.pareto, result.history
    print(result.validate("cpu")); result.plot("pareto.png"); result.save("result.json")

Scale out with ``executor="process"`` / ``"ray"``; ``checkpoint=path`` and ``SearchSession.resume(path, model)``.
A whole model's latency is its backbone calls (``predict_calls``) plus the rest (``rest_of_model``).
"""

from .checkpoint import SearchState, read_checkpoint, write_checkpoint
from .engine import SearchEngine
from .evaluation import Failure
from .executors import ProcessExecutor, RayExecutor, resolve_executor
from .outcome import SearchOutcome, pareto_front
from .protocols import Executor
from .result import SearchResult
from .resuming import SettingsDiffer
from .session import SearchSession
from .settings import SearchSettings, resolve_budget
from .strategies import STRATEGIES, GeneticSearch, NSGA2Search, RandomSearch
from .strategy import Problem, SearchStrategy, Trial
from .validation import ValidationReport
from .whole import predict_calls, rest_of_model

__all__ = [
    "STRATEGIES", "Executor", "Failure", "GeneticSearch", "NSGA2Search", "Problem", "ProcessExecutor", "RandomSearch",
    "RayExecutor", "SearchEngine", "SearchOutcome", "SearchResult", "SearchSession", "SearchSettings", "SearchState",
    "SearchStrategy", "SettingsDiffer", "Trial", "ValidationReport", "pareto_front", "predict_calls",
    "read_checkpoint", "resolve_budget", "resolve_executor", "rest_of_model", "write_checkpoint",
]
