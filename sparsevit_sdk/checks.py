"""Public arguments checked at the door, by one mechanism.

A public function says what each argument accepts in its signature, with a type made here
(``seed: Seed | None``, ``timeout_s: TimeLimit``), and is decorated :func:`checked`; a dataclass
of settings calls :func:`check_fields` from ``__post_init__``.  A value that is not accepted is
refused before any work, in one line naming the caller, the argument, the value and what the
argument takes::

    SearchSession: max_evaluations=2.5 is not accepted; max_evaluations takes an integer >= 2, or None (no limit)

The rules are the same everywhere: a bool is not a number (``timeout_s=True`` is not one second),
numpy scalars are numbers (``np.float32(5)``), a count is an integer (2.5 is not one, nor 2.0),
and every number is finite.  Accepted values come back as Python ``int``/``float``, so no numpy
scalar travels further.  pydantic checks them (a :class:`~pydantic.TypeAdapter` of each
``Annotated`` type, bounds from ``annotated_types``); unlike ``pydantic.validate_call``, only the
arguments whose type says what it accepts (carries an :class:`Accepts`) are checked, so models,
proxies and executors keep their own, more specific checks, and nothing is coerced from text.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from annotated_types import Interval
from pydantic import BeforeValidator, TypeAdapter, ValidationError

F = TypeVar("F", bound=Callable[..., Any])


class ArgumentError(ValueError, TypeError):
    """A public argument of the wrong type or out of range.  Both a ValueError and a TypeError,
    so callers catching either (as every command does) report it."""


@dataclass(frozen=True)
class Accepts:
    """What an argument of an ``Annotated`` type accepts, in words, for the refusal message."""

    text: str


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError("not a real number")
    if not math.isfinite(value):
        raise ValueError("not finite")
    return float(value)


def _integral(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError("not an integer")
    return int(value)


def _sequence(value: Any) -> Any:
    """Lists, tuples and arrays, which have an order; not text, sets or mappings."""
    if isinstance(value, str | bytes | set | frozenset | dict) or not hasattr(value, "__len__"):
        raise ValueError("not a sequence")
    return tuple(value)


def _bounds(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> str:
    """`` > 0``, `` in [0, 1]``: the bounds as a message states them."""
    low, high = (gt, ge)[gt is None], (lt, le)[lt is None]
    if low is not None and high is not None:
        return f" in {'[('[gt is not None]}{low:g}, {high:g}{'])'[lt is not None]}"
    return "".join(f" {op} {bound:g}" for op, bound in ((">", gt), (">=", ge), ("<", lt), ("<=", le))
                   if bound is not None)


def number(*, gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None,
           unit: str = "") -> Any:
    """A finite real number (numpy's included, bools not) within the bounds, as a ``float``;
    ``unit`` names it in messages (``"seconds"``: "a number of seconds > 0")."""
    what = f"a number of {unit}" if unit else "a finite number"
    return Annotated[float, BeforeValidator(_real), Interval(gt=gt, ge=ge, lt=lt, le=le),
                     Accepts(what + _bounds(gt, ge, lt, le))]


def integer(*, ge: int | None = None, le: int | None = None, note: str = "") -> Any:
    """An integer (numpy's included; bools and floats such as 2.0 not) within the bounds, as an
    ``int``; ``note`` says why the bounds, in messages."""
    return Annotated[int, BeforeValidator(_integral), Interval(ge=ge, le=le),
                     Accepts("an integer" + _bounds(None, ge, None, le) + (f" ({note})" if note else ""))]


def optional(kind: Any, none: str) -> Any:
    """``kind`` or None, where None means ``none`` (``"no limit"``)."""
    return Annotated[kind | None, Accepts(f"{accepts(kind)}, or None ({none})")]


def pair(kind: Any, text: str) -> Any:
    """Two values of ``kind``, given as a list, tuple or array, as a tuple; ``text`` says what they are."""
    return Annotated[tuple[kind, kind], BeforeValidator(_sequence), Accepts(text)]


Count = integer(ge=1)
Seed = integer(ge=0)
Probability = number(ge=0, le=1)
Resolution = pair(integer(ge=1), "(height, width) in pixels, two integers >= 1")


def accepts(kind: Any) -> str | None:
    """What ``kind`` accepts, in words; None for a type that does not say (it is not checked)."""
    if get_origin(kind) is Annotated:
        said = [m.text for m in kind.__metadata__ if isinstance(m, Accepts)]
        return said[-1] if said else accepts(get_args(kind)[0])
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(kind))
    if get_origin(kind) in (Union, UnionType):  # ``Milliseconds | None``
        said = ["None" if part is type(None) else accepts(part) for part in get_args(kind)]
        return None if None in said else ", or ".join(said)
    return None


@functools.cache
def _adapter(kind: Any) -> TypeAdapter:
    return TypeAdapter(kind)


def check(value: Any, kind: Any, *, name: str, caller: str) -> Any:
    """``value`` as ``kind`` accepts it (numbers as Python ``int``/``float``), or an
    :class:`ArgumentError` in one line naming ``caller``, the argument ``name``, the value and
    what ``kind`` accepts."""
    try:
        return _adapter(kind).validate_python(value)
    except ValidationError as err:
        why = "; a bool is not a number" if isinstance(value, bool) else ""
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise ArgumentError(f"{caller}: {name}={shown} is not accepted; {name} takes {accepts(kind)}{why}") from err


@functools.cache
def _checked_hints(owner: Any) -> dict[str, Any]:
    """The annotations of ``owner`` (a function or a class) that say what they accept."""
    return {name: kind for name, kind in get_type_hints(owner, include_extras=True).items()
            if name != "return" and accepts(kind) is not None}


def checked(fn: F) -> F:
    """Check ``fn``'s arguments whose annotations say what they accept (see the module
    docstring) on every call, and call it with the accepted values.

    The annotations are read on the first call, when every name they use exists.  A method's
    caller is named by its class (``SearchSession``), the instance's for ``__init__``.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        kinds = _checked_hints(fn)
        bound = signature.bind(*args, **kwargs)
        owner, _, method = fn.__qualname__.rpartition(".")
        if method == "__init__" and args:
            owner = type(args[0]).__name__
        caller = owner if method == "__init__" else fn.__qualname__
        for name, kind in kinds.items():
            if name in bound.arguments:
                bound.arguments[name] = check(bound.arguments[name], kind, name=name, caller=caller)
        return fn(*bound.args, **bound.kwargs)

    return call  # type: ignore[return-value]


def check_fields(obj: Any) -> None:
    """Check the fields of dataclass ``obj`` whose types say what they accept, and set each to
    its accepted value (for ``__post_init__``, frozen dataclasses included)."""
    kinds = _checked_hints(type(obj))
    for f in fields(obj):
        if f.name in kinds:
            value = check(getattr(obj, f.name), kinds[f.name], name=f.name, caller=type(obj).__name__)
            object.__setattr__(obj, f.name, value)
