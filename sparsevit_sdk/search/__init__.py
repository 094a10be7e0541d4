"""Search: per-knob sparsity under a latency budget (DEAP), validated on the real kernels.

    result = SearchSession(model, hw="jetson-orin", latency_budget=0.7).run()
    result.best, result.predicted_ms, result.pareto, result.history
    print(result.validate("cpu")); result.plot("pareto.png"); result.save("result.json")
"""

from .engine import EvolutionOutcome, EvolutionSearch, Executor, pareto_front, resolve_budget
from .result import SearchResult, ValidationReport
from .session import SearchSession

__all__ = [
    "EvolutionOutcome", "EvolutionSearch", "Executor", "SearchResult", "SearchSession", "ValidationReport",
    "pareto_front", "resolve_budget",
]
