from pathlib import Path

import pytest
from conftest import PARAMS, composed
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rethink.__main__ import normalize_argv
from rethink.models import count_params

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("model", "dataset", "corruption", "regularizer", "scale", "row", "task", "experiment")
NEEDS = {"model=inception_v3": ["dataset=imagenet"],  # ImageNet's model: 299x299 inputs
         "dataset=imagefolder": ["dataset.root=/x"]}  # an image tree has no default folder


def options(group: str) -> list[str]:
    """The options of a config group as `conf/` holds them: a new file is tested the day it is added."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_the_groups_tested_are_the_groups_in_conf():
    assert sorted(p.name for p in CONF.iterdir() if p.is_dir()) == sorted(GROUPS)
    assert all(options(g) for g in GROUPS)


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS[:6] for o in options(g)])
def test_every_group_option_composes(group, option):
    cfg = composed(f"{group}={option}", *NEEDS.get(f"{group}={option}", []))
    assert cfg.trainer.momentum == 0.9
    if group == "model":
        assert cfg.model.name == option and {"cpu", "paper"} <= set(cfg.model)  # every model states both budgets
        net = instantiate(cfg.model.net, num_classes=1000 if option == "inception_v3" else 10)
        assert count_params(net) == PARAMS[option]
        paper_lr = {"inception": 0.1, "inception_nobn": 0.1, "alexnet": 0.01, "mlp_1x512": 0.01, "mlp_3x512": 0.01}
        if option in paper_lr:  # the paper's CIFAR-10 models (Section 3): batch 128, x0.95 per epoch
            assert cfg.trainer.lr == paper_lr[option] and cfg.trainer.batch_size == 128 and cfg.trainer.lr_decay == 0.95
    if group == "corruption":
        assert instantiate(cfg.corruption).kind == cfg.corruption.kind
    if group == "dataset":
        assert instantiate(cfg.dataset).name == cfg.dataset.name
    if group == "row":  # a row names its model, regularizers and corruption; its header states the paper's numbers
        assert OmegaConf.select(cfg, "model.name") and (CONF / "row" / f"{option}.yaml").read_text().startswith("# @package")


@pytest.mark.parametrize("task", options("task"))
def test_every_task_composes(task):
    assert composed(f"task={task}").task.name == task


def test_imagefolder_dataset_composes_with_its_required_values():
    cfg = composed("dataset=imagefolder", "dataset.root=/x", "dataset.num_classes=3", "dataset.input_shape=[3,16,16]")
    assert instantiate(cfg.dataset).num_classes == 3


def test_regularizer_list_merges_and_defaults_are_off():
    base = composed()
    assert base.regularizer.weight_decay == 0 and not base.regularizer.random_crop and base.regularizer.dropout == 0
    cfg = composed("regularizer=[weight_decay,random_crop]")
    assert cfg.regularizer.weight_decay == 0.0005 and cfg.regularizer.random_crop and not cfg.regularizer.flip
    assert composed("regularizer=augment").regularizer.flip
    assert instantiate(composed("regularizer=dropout").model.net)[-2].p == 0.5


def test_scale_switch():
    cpu = composed()
    assert cpu.dataset.train_size == cpu.model.cpu.train_size and cpu.trainer.max_epochs == cpu.model.cpu.max_epochs
    paper = composed("scale=paper")
    assert paper.dataset.train_size is None and paper.trainer.lr_decay_period is None
    # Each model has its own epoch budget at each scale.
    assert {m: composed("scale=paper", f"model={m}").trainer.max_epochs for m in ("inception", "mlp_1x512")} == {
        "inception": 80, "mlp_1x512": 120}


@pytest.mark.parametrize("preset", options("experiment"))
def test_presets_train_the_whole_budget(preset):
    cfg = composed(f"experiment={preset}", "scale=paper", return_hydra_config=True)
    assert cfg.trainer.stop_at_target is False and cfg.trainer.max_epochs == cfg.model.paper.max_epochs
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.hydra.sweeper.params  # a preset is a sweep
    rows = str(cfg.hydra.sweeper.params.get("row", "")).split(",")
    assert all(r in options("row") for r in rows if r)  # every row a preset sweeps exists
    assert composed().trainer.stop_at_target is True  # a single run still stops at the target


def test_every_row_is_in_a_preset():
    swept = {r for p in options("experiment")
             for r in str(composed(f"experiment={p}", return_hydra_config=True).hydra.sweeper.params.get("row", "")).split(",")}
    assert set(options("row")) <= swept


@pytest.mark.parametrize("argv, expected", [
    (["-m", "corruption=0,0.2,0.5,1.0"], ["-m", "corruption=labels", "corruption.level=0,0.2,0.5,1.0"]),
    (["corruption=0.3"], ["corruption=labels", "corruption.level=0.3"]),
    (["corruption=1"], ["corruption=labels", "corruption.level=1"]),
    (["corruption=random_pixels", "corruption.level=1.0"], ["corruption=random_pixels", "corruption.level=1.0"]),
    (["model=alexnet"], ["model=alexnet"]),
])
def test_numeric_corruption_becomes_label_corruption_level(argv, expected):
    assert normalize_argv(argv) == expected


def test_normalized_levels_compose_as_numbers():
    cfg = composed(*normalize_argv(["corruption=0.5"]))
    assert cfg.corruption.kind == "labels" and cfg.corruption.level == 0.5
