"""The explicit regularizers a job can switch on under `regularizer.*`: one list, which the run name,
the run description, the sweep summary and the report all read, so a new switch is added once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Switch:
    """One regularizer switch: its key under `regularizer.`, its tag in run names, its name in prose."""

    key: str
    tag: str
    name: str


SWITCHES = (Switch("weight_decay", "wd", "weight decay"), Switch("random_crop", "crop", "random crop"),
            Switch("flip", "flip", "flip"), Switch("rotate", "rot", "rotation"), Switch("dropout", "dropout", "dropout"))


def is_on(value: Any) -> bool:
    """A switch is on when it is true or a positive number; params read back as strings count too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    text = str(value).strip().lower()
    if text in ("true", "false", "none", "null", ""):
        return text == "true"
    try:
        return float(text) > 0
    except ValueError:
        return False


def switched_on(regularizer: Mapping[str, Any]) -> list[Switch]:
    """The switches on in `regularizer` (the config node, or params keyed without the `regularizer.` prefix)."""
    return [s for s in SWITCHES if is_on(regularizer.get(s.key))]
