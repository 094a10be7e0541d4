"""The built-in search strategies, by name; a user's own is any :class:`~..strategy.SearchStrategy`."""

from __future__ import annotations

import inspect
from typing import Any

from ..settings import FIELDS, check_keywords
from ..strategy import SearchStrategy
from .genetic import GeneticSearch, NSGA2Search
from .random import RandomSearch

STRATEGIES: dict[str, type] = {cls.name: cls for cls in (GeneticSearch, NSGA2Search, RandomSearch)}
DEFAULT_STRATEGY = GeneticSearch.name
# every keyword a built-in strategy is built with (population, samples, ...)
OPTION_NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for cls in STRATEGIES.values()
                                                    for name in inspect.signature(cls).parameters))


def _class(name: str) -> type:
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; the built-in ones are {', '.join(STRATEGIES)}, or pass "
                         "an object with the SearchStrategy members (sparsevit_sdk.search.strategy)")
    return STRATEGIES[name]


def make_strategy(strategy: str | SearchStrategy, **options: Any) -> SearchStrategy:
    """The built-in strategy named ``strategy``, built with ``options``, or the strategy given (with no options)."""
    if isinstance(strategy, str):
        return _class(strategy)(**options)
    if options:
        raise TypeError(f"pass the options of your {type(strategy).__name__} to its constructor, not with it "
                        f"({', '.join(sorted(options))})")
    for member in ("name", "objective", "rounds", "options", "start", "ask", "tell", "state_dict",
                   "load_state_dict"):
        if not hasattr(strategy, member):
            raise TypeError(f"strategy must be a name ({', '.join(STRATEGIES)}) or have the SearchStrategy members; "
                            f"{type(strategy).__name__} has no {member}")
    return strategy


def resolve_strategy(strategy: str | SearchStrategy, options: dict[str, Any], *, caller: str
                     ) -> tuple[SearchStrategy, dict[str, Any]]:
    """The strategy, built from the keywords of ``options`` that are its own when it is named, and
    the keywords left: the search settings.  A keyword that is neither is refused, naming both."""
    if isinstance(strategy, str):
        own = tuple(inspect.signature(_class(strategy)).parameters)
        check_keywords(options, caller=caller, allowed=(*FIELDS, *own))
    else:  # its own options were its constructor's: make_strategy refuses them here
        own = tuple(k for k in options if k not in FIELDS)
    built = make_strategy(strategy, **{k: v for k, v in options.items() if k in own})
    return built, {k: v for k, v in options.items() if k not in own}


__all__ = ["DEFAULT_STRATEGY", "OPTION_NAMES", "STRATEGIES", "GeneticSearch", "NSGA2Search", "RandomSearch",
           "make_strategy", "resolve_strategy"]
