"""The options of the theory tasks (`task=expressivity|kernel|minnorm`) as typed dataclasses.

One frozen dataclass per task; its fields and defaults are those of conf/task/<name>.yaml (a test
compares them). Constructing one validates it (`__post_init__`): each field against its type hint
(`Literal[...]` lists the choices, `int | None` / `float | None` allows null, `field` metadata gives
the minimum), then the rules between fields. A bad value stops with one line (RethinkError) that
names the key and what is allowed, e.g. `task.dtype='float16' is not allowed: use float64 or float32`.

Why plain validators and not Hydra ConfigStore schemas for the `task` group (tried with Hydra 1.3.8,
OmegaConf 2.3): OmegaConf rejects `Literal` annotations ("Unexpected type annotation"), so the choices
would become Enums, whose members then stand in `cfg.task` (their str() would enter the MLflow
params and the job's identity hash); a wrong type or choice fails while Hydra merges the override,
before any job code, with four lines ("Error merging override task.train_size=abc", "Value 'abc' of
type 'str' could not be converted to Integer", "full_key: task.train_size", "object_type=...") and
none of the rules between fields; and each conf/task/*.yaml would need a defaults entry naming a
schema that only exists once this module is imported, so every compose (tests, `--cfg job`,
scripts) would first have to import it.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf

from rethink.errors import RethinkError

TASKS = ("train", "expressivity", "kernel", "minnorm")
NUM_CLASSES = 10


def bad(key: str, value: Any, allowed: str) -> RethinkError:
    return RethinkError(f"task.{key}={value!r} is not allowed: use {allowed}")


def at_least(minimum: int | float | Callable[[Any], int], default: Any, strict: bool = False) -> Any:
    """A numeric field: value >= minimum (> if strict); minimum may depend on the other options."""
    return field(default=default, metadata={"minimum": minimum, "strict": strict})


def listing(options: tuple[str, ...]) -> str:
    return ", ".join(options[:-1]) + f" or {options[-1]}"


@dataclass(frozen=True)
class TaskOptions:
    """Validation shared by the three tasks: every field against its type hint."""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, self.checked(f, hints[f.name], getattr(self, f.name)))

    def checked(self, f: dataclasses.Field, hint: Any, value: Any) -> Any:
        """`value` as the field's type, or a RethinkError naming the key and what is allowed."""
        if get_origin(hint) is Literal:
            if value not in get_args(hint):
                raise bad(f.name, value, listing(get_args(hint)))
            return value
        args = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
        nullable, kind = type(None) in args, next(a for a in args if a is not type(None))
        if value is None and nullable:
            return None
        minimum = f.metadata.get("minimum", 0)
        minimum = minimum(self) if callable(minimum) else minimum
        if kind is int:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise bad(f.name, value, ("null (all) or " if nullable else "") + f"an integer >= {minimum}")
            return int(value)
        strict = f.metadata.get("strict", False)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (value <= minimum if strict else value < minimum):
            raise bad(f.name, value, ("null or " if nullable else "") + f"a number {'>' if strict else '>='} {minimum:g}")
        return float(value)

    @classmethod
    def of(cls: type[T], opts: Mapping[str, Any] | TaskOptions) -> T:
        """`opts` as this class: as is if it already is one, else validated (a dict from `validate`)."""
        if isinstance(opts, cls):
            return opts
        values = OmegaConf.to_container(opts, resolve=True) if isinstance(opts, DictConfig) else dict(opts)
        known = [f.name for f in dataclasses.fields(cls)]
        for key, value in values.items():
            if key not in known:
                raise RethinkError(f"task.{key}={value!r} is not known for task={values.get('name')}: "
                                   f"its options are {', '.join(known)}")
        return cls(**values)


T = TypeVar("T", bound=TaskOptions)


def image_minimum(opts: Any) -> int:
    """Images are subset stratified, at least one per class; gaussian points need only one."""
    return 1 if opts.data == "gaussian" else NUM_CLASSES


@dataclass(frozen=True)
class ExpressivityOptions(TaskOptions):
    """Theorem 1 (conf/task/expressivity.yaml)."""

    name: Literal["expressivity"] = "expressivity"
    data: Literal["cifar10", "mnist", "gaussian"] = "cifar10"
    train_size: int | None = at_least(image_minimum, None)
    test_size: int | None = at_least(NUM_CLASSES, None)
    dim: int = at_least(1, 100)
    targets: Literal["true_labels", "random_labels", "random_reals"] = "true_labels"
    dtype: Literal["float64", "float32"] = "float64"
    seed: int = at_least(0, 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data == "gaussian" and self.targets == "true_labels":
            raise RethinkError("task.targets='true_labels' is not allowed with task.data=gaussian (the points have "
                               "no labels): use random_labels or random_reals")


@dataclass(frozen=True)
class KernelOptions(TaskOptions):
    """Table 3, Gaussian-kernel interpolation (conf/task/kernel.yaml)."""

    name: Literal["kernel"] = "kernel"
    data: Literal["cifar10", "mnist"] = "mnist"
    train_size: int | None = at_least(NUM_CLASSES, 5000)
    test_size: int | None = at_least(NUM_CLASSES, None)
    targets: Literal["true_labels", "random_labels"] = "true_labels"
    features: Literal["raw", "random_conv", "gabor"] = "raw"
    num_filters: int = at_least(1, 1024)
    kernel_size: int = at_least(1, 6)
    pool: int = at_least(1, 3)
    gamma: float | None = at_least(0.0, None, strict=True)
    dtype: Literal["float64", "float32"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    jitter: float = at_least(0.0, 0.0)
    threads: int | None = at_least(1, None)
    seed: int = at_least(0, 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.features == "random_conv" and self.data != "cifar10":
            raise RethinkError(f"task.features='random_conv' is not allowed with task.data={self.data!r}: "
                               "random conv features need colour images, use task.data=cifar10 (or task.features=raw)")
        if self.features == "gabor" and self.data != "mnist":
            raise RethinkError(f"task.features='gabor' is not allowed with task.data={self.data!r}: "
                               "the Gabor row of Table 3 is for MNIST, use task.data=mnist")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise RethinkError("task.device='cuda' is not allowed here: no CUDA device is available, use auto or cpu")


@dataclass(frozen=True)
class MinnormOptions(TaskOptions):
    """Section 5, SGD to the minimum-norm least-squares solution (conf/task/minnorm.yaml)."""

    name: Literal["minnorm"] = "minnorm"
    n: int = at_least(1, 100)
    d: int = at_least(1, 1000)
    epochs: int = at_least(1, 100)
    lr: float | None = at_least(0.0, None, strict=True)
    batch_size: int = at_least(1, 1)
    start: Literal["zero", "random"] = "zero"
    seed: int = at_least(0, 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size > self.n:
            raise bad("batch_size", self.batch_size, f"an integer in [1, task.n={self.n}]")


OPTIONS: dict[str, type[TaskOptions]] = {"expressivity": ExpressivityOptions, "kernel": KernelOptions,
                                         "minnorm": MinnormOptions}


def parse(task: Mapping[str, Any] | TaskOptions) -> ExpressivityOptions | KernelOptions | MinnormOptions:
    """A theory task's options (its `task` node) as its typed dataclass, validated."""
    if isinstance(task, TaskOptions):
        return task
    name = task.get("name")
    if name not in OPTIONS:
        raise RethinkError(f"task.name={name!r} is not known: use one of {', '.join(TASKS)}")
    return OPTIONS[name].of(task)


def validate(task: Mapping[str, Any] | TaskOptions) -> dict[str, Any]:
    """Check a theory task's options; return them as plain values (a dict: the job logs it as JSON)."""
    return dataclasses.asdict(parse(task))
