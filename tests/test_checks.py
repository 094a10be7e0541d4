"""sparsevit_sdk/checks.py: one mechanism checks public arguments by type and range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sparsevit_sdk.checks import (
    ArgumentError,
    Count,
    Probability,
    Resolution,
    Seed,
    check,
    check_fields,
    checked,
    integer,
    number,
    optional,
)

Seconds = optional(number(gt=0, unit="seconds"), "no limit")


@checked
def wait(name: str, timeout_s: Seconds = None, *, tries: Count = 1, seed: Seed | None = 0) -> tuple:
    """A public function: ``name`` says nothing of what it accepts, so it is not checked."""
    return name, timeout_s, tries, seed


@pytest.mark.parametrize("value, kind, expected", [
    (np.float32(5), number(ge=0), 5.0),  # numpy scalars are numbers
    (np.int64(3), Count, 3),
    (7, number(), 7.0),
    (None, Seconds, None),
    ([112, 96], Resolution, (112, 96)),
    (np.array([64, 64]), Resolution, (64, 64)),
])
def test_accepted_values_come_back_as_python_numbers(value, kind, expected):
    got = check(value, kind, name="x", caller="f")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value, kind, takes", [
    (True, Seconds, "takes a number of seconds > 0, or None (no limit); a bool is not a number"),
    (2.5, Count, "takes an integer >= 1"),
    (2.0, Count, "takes an integer >= 1"),  # a count is an integer, even a whole float
    (-1, Seed, "takes an integer >= 0"),
    ("0.5", Probability, "takes a finite number in [0, 1]"),  # text is no number
    (float("nan"), number(), "takes a finite number"),
    (1.5, Probability, "takes a finite number in [0, 1]"),
    ("112x112", Resolution, "takes (height, width) in pixels, two integers >= 1"),
    ({112, 96}, Resolution, "takes (height, width) in pixels, two integers >= 1"),  # a set has no order
    (0, optional(integer(ge=2, note="why"), "no limit"), "takes an integer >= 2 (why), or None (no limit)"),
])
def test_refusals_name_the_caller_the_argument_the_value_and_what_it_takes(value, kind, takes):
    with pytest.raises(ArgumentError) as err:
        check(value, kind, name="x", caller="entry")
    assert str(err.value) == f"entry: x={value!r} is not accepted; x {takes}"
    assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)  # caught either way


def test_only_annotated_arguments_are_checked_positional_or_keyword():
    assert wait(object(), np.float64(1.5), tries=np.int32(2))[1:] == (1.5, 2, 0)
    with pytest.raises(ArgumentError, match=r"^wait: seed=-3 is not accepted; seed takes an integer >= 0, or None$"):
        wait("x", seed=-3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'tyres'"):  # a wrong call stays Python's error
        wait("x", tyres=2)


def test_a_dataclass_checks_and_converts_its_fields():
    @dataclass(frozen=True)
    class Limits:
        tries: Count = 1
        seed: Seed | None = None

        def __post_init__(self) -> None:
            check_fields(self)

    assert Limits(np.int64(4)).tries == 4 and type(Limits(np.int64(4)).tries) is int
    with pytest.raises(ArgumentError, match=r"^Limits: tries=True is not accepted; tries takes an integer >= 1; a"):
        Limits(True)


def test_a_class_is_named_by_the_instance_built():
    class Base:
        @checked
        def __init__(self, size: Count) -> None:
            self.size = size

    class Child(Base):
        pass

    with pytest.raises(ArgumentError, match=r"^Child: size=0 is not accepted"):
        Child(0)
