"""Guards on the layout: every sweep preset (conf/experiment) and every table row (conf/row) composes
and means what it says, found by glob so that a new file is covered without editing this one; and one
`gpu` test of the training loop on CUDA (skipped, with the reason, where there is none)."""

import functools
import itertools
import math
import re

import pytest
import torch
from conftest import CONF, PARAMS, composed
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rethink.models import count_params

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
ROWS = sorted(p.stem for p in (CONF / "row").glob("*.yaml"))
SCALES = sorted(p.stem for p in (CONF / "scale").glob("*.yaml"))


def options(group: str) -> set[str]:
    """The options of a config group: the files in rethink/conf/<group>/."""
    return {p.stem for p in (CONF / group).glob("*.yaml")}


def sweep(params) -> dict[str, list[str]]:
    """hydra.sweeper.params as the basic sweeper expands them: key -> the values it takes."""
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.key_or_group: list(o.sweep_string_iterator()) if o.is_sweep_override()
            else [o.get_value_element_as_str()] for o in parsed}


def test_the_globs_found_the_layout():
    assert {"table1", "table4", "fig1a", "fig1bc", "fig2b"} <= set(EXPERIMENTS)
    assert len(ROWS) >= 25 and {"cpu", "paper"} <= set(SCALES)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes_as_a_valid_sweep(experiment, scale):
    cfg = composed(f"experiment={experiment}", f"scale={scale}", return_hydra_config=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN, f"{experiment}: a preset is a sweep (hydra.mode: MULTIRUN)"
    assert cfg.hydra.sweeper.params, f"{experiment}: no hydra.sweeper.params"
    assert (cfg.dataset.train_size is None) == (scale == "paper")
    swept = sweep(cfg.hydra.sweeper.params)
    assert math.prod(len(v) for v in swept.values()) >= 2, f"{experiment}: the sweep has a single job"
    for key, values in swept.items():
        assert values and len(set(values)) == len(values), f"{experiment}: {key}={values}"
        if (CONF / key).is_dir():  # a config group: every value is one of its files
            missing = set(values) - options(key)
            assert not missing, f"{experiment}: {key}={sorted(missing)} not in rethink/conf/{key}/"
        elif key == "corruption.level":
            assert all(0 <= float(v) <= 1 for v in values), f"{experiment}: {key}={values}"
        else:  # any other key: each value composes
            for v in values:
                composed(f"experiment={experiment}", f"scale={scale}", f"{key}={v}")
    # The first and the last job of the sweep compose, as the sweeper composes them, with the values swept.
    for pick in (0, -1):
        job = composed(f"experiment={experiment}", f"scale={scale}", *(f"{k}={v[pick]}" for k, v in swept.items()),
                       return_hydra_config=True)
        for key, values in swept.items():
            got = job.hydra.runtime.choices[key] if (CONF / key).is_dir() else OmegaConf.select(job, key)
            assert str(got) == values[pick] or is_number(values[pick]) and float(got) == float(values[pick]), key


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@functools.cache
def row_config(row: str):
    """`row=ROW` composed (once: two tests read it)."""
    return composed(f"row={row}")


def promises(row: str) -> dict:
    """What a row's comment promises (`# Table 1 row: alexnet, random crop yes, weight decay no, random
    labels (...)` / `# Table 4 row (...): random labels, inception + augment (...)`)."""
    text = " ".join(line.lstrip("# ") for line in (CONF / "row" / f"{row}.yaml").read_text().splitlines()
                    if line.startswith("#") and "@package" not in line)
    text = re.sub(r"\(paper[^)]*\)", "", text)  # the paper's figures, not a promise
    models = re.findall(r"\b(" + "|".join(sorted(options("model"), key=len, reverse=True)) + r")\b", text)
    assert len(set(models)) == 1, f"row {row}: its comment names no single model ({text!r})"
    return {
        "model": models[0],
        "random_labels": "random labels" in text,
        "random_crop": bool(re.search(r"random crop yes|\brandom_crop\b", text)),
        # the paper's Table 4 augmentation: random flip + rotation up to 25 degrees (Appendix E), no crop
        "flip": bool(re.search(r"\baugment\b|\bflip\b", text)),
        "rotate": bool(re.search(r"\baugment\b|\brotat", text)),
        "weight_decay": bool(re.search(r"weight decay yes|\bweight_decay\b", text)),
        "dropout": bool(re.search(r"\bdropout\b", text)),
    }


@pytest.mark.parametrize("row", ROWS)
def test_every_row_builds_the_paper_model_with_what_its_comment_promises(row):
    want = promises(row)
    # The name agrees with the comment: t<table>_<model>[_crop][_wd][_random] | t4_<model>_<regularizer>.
    assert re.match(rf"t\d+_{want['model']}(_|$)", row), f"row {row}: the name does not start with its model"
    tokens = set(row.split("_"))
    assert want["random_labels"] or not row.endswith("_random"), f"row {row}: the comment says no random labels"
    assert want["weight_decay"] or not ({"wd", "decay"} & tokens), f"row {row}: the comment says no weight decay"
    assert want["random_crop"] or "crop" not in tokens, f"row {row}: the comment says no random crop"
    assert want["flip"] or "augment" not in tokens, f"row {row}: the comment says no augmentation"

    cfg = row_config(row)
    assert cfg.model.name == want["model"], f"row {row}: model {cfg.model.name}, the comment says {want['model']}"
    assert want["model"] in PARAMS, f"add the paper's parameter count of {want['model']} to conftest.PARAMS"
    assert count_params(instantiate(cfg.model.net)) == PARAMS[want["model"]]
    level = 1.0 if want["random_labels"] else 0.0
    assert cfg.corruption.kind == "labels" and cfg.corruption.level == level, \
        f"row {row}: corruption {cfg.corruption.kind} at {cfg.corruption.level}, the comment says labels at {level}"
    reg = cfg.regularizer
    assert (reg.weight_decay > 0) == want["weight_decay"], f"row {row}: weight_decay={reg.weight_decay}"
    assert bool(reg.random_crop) == want["random_crop"], f"row {row}: random_crop={reg.random_crop}"
    assert bool(reg.flip) == want["flip"], f"row {row}: flip={reg.flip}"
    assert (reg.rotate > 0) == want["rotate"], f"row {row}: rotate={reg.rotate}"
    assert (reg.dropout > 0) == want["dropout"], f"row {row}: dropout={reg.dropout}"


def test_rows_are_distinct_jobs():
    """No two rows compose to the same job (a copy-pasted row would silently run twice)."""
    def key(row):
        cfg = row_config(row)
        return cfg.model.name, cfg.corruption.level, tuple(sorted(cfg.regularizer.items()))

    for a, b in itertools.combinations([(row, key(row)) for row in ROWS], 2):
        assert a[1] != b[1], f"rows {a[0]} and {b[0]} are the same job"


@pytest.mark.gpu
def test_training_on_cuda_two_epochs_of_a_tiny_mlp():
    from rethink.corrupt import Corruption
    from rethink.data.memory import ImageData
    from rethink.models import MLP
    from rethink.training.fit import fit
    from rethink.training.settings import TrainSettings

    g = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)  # noqa: E731
    labels = lambda n: torch.randint(0, 10, (n,), generator=g)  # noqa: E731
    data = Corruption(kind="labels", level=0.5, seed=0).apply(
        ImageData(images(512), labels(512), images(256), labels(256), [str(i) for i in range(10)]))
    model = MLP((3, 28, 28), 10, [64])
    torch.manual_seed(0)
    s = TrainSettings(lr=0.01, max_epochs=2, stop_at_target=False, device="cuda", crop_size=28, checkpoint_every=0)
    res = fit(model, data, s)
    assert next(model.parameters()).is_cuda
    assert res.epochs == 2 and len(res.history) == 2 and res.stop_reason == "max_epochs"
    assert res.steps == 2 * math.ceil(512 / s.batch_size)
    for h in res.history:
        assert math.isfinite(h["train/loss"]) and 0 < h["train/loss"] < 10
        assert 0 <= h["train/acc"] <= 1 and 0 <= h["test/acc"] <= 1
