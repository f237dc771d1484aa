"""Type and range checks for config values, shared by the specs (DatasetSpec, Corruption, TrainSettings).

Hydra hands a value over as the override's text parsed as YAML: `abc` stays a string, `yes` is a
string (not a boolean), `inf`/`nan` are floats. Each predicate accepts only the intended type
(booleans are not integers here) and only finite numbers; `not_allowed` builds the one-line error.
"""

from __future__ import annotations

import math
from typing import Any

from rethink.errors import RethinkError


def not_allowed(key: str, value: Any, allowed: str) -> RethinkError:
    """The one-line error for a bad value: `<key>=<value> is not allowed: use <allowed>`."""
    return RethinkError(f"{key}={value!r} is not allowed: use {allowed}")


def is_int(value: Any, minimum: int) -> bool:
    """An integer (not a boolean) >= minimum."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    """A finite int or float (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def in_range(value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> bool:
    """A finite number in the interval from low to high (each end open or closed)."""
    if not is_number(value):
        return False
    return (value > low if low_open else value >= low) and (value < high if high_open else value <= high)


def check(rules: list[tuple[str, Any, bool, str]]) -> None:
    """Raise `not_allowed` for the first (key, value, ok, allowed) rule whose `ok` is false."""
    for key, value, ok, allowed in rules:
        if not ok:
            raise not_allowed(key, value, allowed)


def dropout_rate(p: Any) -> float:
    """`regularizer.dropout` as a float in [0, 1), or the one-line error (used where models consume it)."""
    check([("regularizer.dropout", p, in_range(p, 0, 1, high_open=True), "a number in [0, 1)")])
    return float(p)
