"""Option types that refuse meaningless numbers where they enter.

argparse turns a ``ValueError`` from a type into one line naming the option
and the value (``argument --top-words: invalid positive integer value:
'-3'``), so a bad number never reaches a job.  Only the standard library:
:mod:`hpcml.cli` imports this before the thread variables are set.
"""

import math


def _named(name):
    """Give an option type the name argparse prints in its message."""
    def rename(check):
        check.__name__ = name
        return check
    return rename


@_named("float")
def number(text):
    """A float that is not NaN (inf is allowed: bounds may be infinite)."""
    value = float(text)
    if math.isnan(value):
        raise ValueError(text)
    return value


@_named("positive number")
def positive(text):
    """A finite float > 0."""
    value = float(text)
    if not 0 < value < math.inf:
        raise ValueError(text)
    return value


@_named("positive integer")
def count(text):
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


@_named("non-negative integer")
def non_negative_int(text):
    """An integer >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


@_named("grid step (dividing 1: 0.05, 0.1, 0.25, 0.5, 1)")
def grid_step(text):
    """A number in (0, 1] that divides 1: the spacing of a weight grid on the simplex."""
    value = float(text)
    if not 0 < value <= 1 or abs(round(1 / value) * value - 1) > 1e-9:
        raise ValueError(text)
    return value


#: The option types whose values are integers, and those whose values are real
#: numbers (a job spec must give them as TOML numbers, not strings).
INTEGER = (int, count, non_negative_int)
REAL = (float, number, positive, grid_step)
