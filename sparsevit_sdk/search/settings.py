"""SearchSettings: everything that says how a search runs, in one frozen, validated record.

The engine, the session, a resumed session, the CLI, the checkpoint and the result all read
their settings from here.  They are what every search has, whatever its strategy; a strategy's
own knobs (a GA's population, ...) are the strategy's (:mod:`.strategies`).  Two kinds of field:

- what *shapes* the search (:data:`SHAPE_FIELDS`: seed, budget): a resumed search must be
  given the same, so the checkpoint stores them and compares them;
- how *this run* goes (retries and the limits ``timeout_s``, ``max_evaluations``,
  ``patience``): they decide when to stop, not what is searched, so a resume may change them.

The search space (signature, grid, granularity, monotonic) is not a setting: it is its own
object, :class:`~sparsevit_sdk.config.SearchSpace`; :func:`space_settings` writes it beside
the settings where a file records both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Annotated, Any, Literal

from ..checks import Accepts, Seed, check_fields, checked, integer, number, optional
from ..config import SearchSpace

# what a budget is of: the whole model as the user calls it (its backbone's predicted latency
# plus the measured rest, see :mod:`.whole`), or its sparse Swin backbone alone
BudgetScope = Literal["model", "backbone"]

DEFAULT_BUDGET = 0.7  # fraction of the dense model's predicted latency
# The reference settings score ~1,150 configs, 7 s each for Swin-T at 672 px on a 2-core CPU
# (over 2 h): by default a search stops after 10 min.  On a GPU, where a call takes well
# under 0.5 s, that still holds the whole reference search, which no limit then cuts short:
# ``patience`` is off by default for that reason.
DEFAULT_TIMEOUT_S = 600.0
SHAPE_FIELDS = ("seed", "latency_budget", "budget_ms", "budget_of")

# what each setting accepts (sparsevit_sdk.checks); a latency_budget's range is check_budget's, whose
# message suggests budget_ms for a value that looks like milliseconds
Fraction = number()
Milliseconds = number(gt=0, unit="milliseconds")
Scope = Annotated[BudgetScope, Accepts("'model' (the whole model as it is called) or 'backbone' (its Swin alone)")]
TimeLimit = optional(number(gt=0, unit="seconds"), "no time limit")
EvaluationLimit = optional(integer(ge=2, note="the dense and the fastest uniform config are always scored"),
                           "no limit")
Patience = optional(integer(ge=1, note="generations"), "never stop for lack of progress")
Retries = integer(ge=0, note="extra attempts of a failed evaluation")
SearchSeed = optional(Seed, "unseeded, not reproducible")


def check_budget(latency_budget: float | None, budget_ms: float | None) -> None:
    """Exactly one of a fraction of dense latency or an absolute value in ms.

    Two explicit arguments instead of one number read by size: 0.8 could be a fraction or a
    real budget in ms on a fast GPU, and a unit mistake would silently search the wrong thing.
    """
    if (latency_budget is None) == (budget_ms is None):
        raise ValueError("give exactly one budget: latency_budget=0.7 (fraction of dense latency) or "
                         "budget_ms=12.5 (milliseconds)")
    if latency_budget is not None and not 0 < latency_budget <= 1:
        hint = f"; for an absolute budget pass budget_ms={latency_budget}" if latency_budget > 1 else ""
        raise ValueError(f"latency_budget is a fraction of the dense model's latency in (0, 1], got "
                         f"{latency_budget}{hint}")


@checked
def resolve_budget(latency_budget: Fraction | None, budget_ms: Milliseconds | None, dense_ms: Milliseconds) -> float:
    """The budget in ms from exactly one of a fraction of dense latency or an absolute value."""
    check_budget(latency_budget, budget_ms)
    return float(budget_ms) if budget_ms is not None else float(latency_budget) * dense_ms


@dataclass(frozen=True)
class SearchSettings:
    """How a search runs (see the module docstring); refused on construction if invalid.

    ``seed`` makes the strategy's draws (and the default proxy's images) reproducible.
    Budget: ``latency_budget`` as a fraction of the dense config's latency, or ``budget_ms``,
    of the whole model (``budget_of="model"``) or of its backbone alone (``"backbone"``).  A
    failed evaluation is retried ``retries`` times.  ``timeout_s``, ``max_evaluations`` and
    ``patience`` (generations, i.e. rounds of the strategy, without a better best score) stop
    the search early (None: no limit).
    """

    latency_budget: Fraction | None = None
    budget_ms: Milliseconds | None = None
    budget_of: Scope = "model"
    seed: SearchSeed = 0
    retries: Retries = 2
    timeout_s: TimeLimit = DEFAULT_TIMEOUT_S
    max_evaluations: EvaluationLimit = None
    patience: Patience = None

    def __post_init__(self) -> None:
        check_fields(self)  # each field's type and range; then what the fields say together
        check_budget(self.latency_budget, self.budget_ms)

    @classmethod
    def from_shape(cls, shape: dict[str, Any], **run: Any) -> SearchSettings:
        """The settings of a checkpointed search (its :meth:`shape`) with this run's ``retries`` and limits."""
        return cls(**{name: shape[name] for name in SHAPE_FIELDS if name in shape}, **run)

    def shape(self) -> dict[str, Any]:
        """What shapes the search (not how this run goes): a resumed search must be given the same."""
        return {name: getattr(self, name) for name in SHAPE_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def limit_message(self, limit: str) -> str:
        """Why the limit ``limit`` (``"time"``, ``"evaluations"``, ``"patience"``) ended a search,
        and the setting that would let it go on."""
        if limit == "time":
            return (f"the time limit of {self.timeout_s:g} s was reached; pass a larger timeout_s (or None) to "
                    "search longer")
        if limit == "evaluations":
            return (f"the limit of {self.max_evaluations} proxy evaluations was reached; raise max_evaluations to "
                    "search longer")
        return (f"the best score has not improved for {self.patience} generations (patience); raise patience (or "
                "pass None) to search on")


FIELDS = tuple(f.name for f in fields(SearchSettings))
RUN_FIELDS = ("retries", "timeout_s", "max_evaluations", "patience")  # what a resumed search may change


def check_keywords(options: dict[str, Any], *, caller: str, allowed: tuple[str, ...] = FIELDS) -> None:
    """Refuse a keyword that is no setting ``caller`` takes, naming the ones it does."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{caller} got unexpected keyword argument(s) {', '.join(unknown)}; the search settings it "
                        f"takes are {', '.join(allowed)}")


def settings_from(settings: SearchSettings | None, options: dict[str, Any], *, caller: str,
                  **defaults: Any) -> SearchSettings:
    """``settings`` or, without it, a :class:`SearchSettings` of the setting keywords ``options``
    a ``caller`` was given (over its ``defaults``)."""
    check_keywords(options, caller=caller)
    if settings is None:
        return SearchSettings(**{**defaults, **options})
    if options:
        raise TypeError(f"{caller}: pass settings=SearchSettings(...) or the setting keywords "
                        f"({', '.join(sorted(options))}), not both")
    return settings


def space_settings(space: SearchSpace) -> dict[str, Any]:
    """The search space as recorded beside the settings in checkpoints and results."""
    return {"signature": space.signature, "grid": list(space.grid), "granularity": space.granularity,
            "monotonic": space.monotonic}
