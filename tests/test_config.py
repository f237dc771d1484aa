import pytest
from conftest import PARAMS, composed
from hydra.utils import instantiate

from rethink.__main__ import normalize_argv
from rethink.models import count_params

GROUPS = {
    "model": ["mlp_1x512", "mlp_3x512", "alexnet", "inception", "inception_nobn"],
    "dataset": ["cifar10", "mnist"],
    "corruption": ["labels", "shuffled_pixels", "random_pixels", "gaussian"],
    "regularizer": ["none", "weight_decay", "random_crop", "augment", "dropout"],
    "scale": ["cpu", "paper"],
}


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(group, option):
    cfg = composed(f"{group}={option}")
    assert cfg.trainer.batch_size == 128 and cfg.trainer.momentum == 0.9 and cfg.trainer.lr_decay == 0.95
    if group == "model":
        assert cfg.model.name == option
        assert count_params(instantiate(cfg.model.net)) == PARAMS[option]
        assert cfg.trainer.lr == (0.1 if option.startswith("inception") else 0.01)
    if group == "corruption":
        assert instantiate(cfg.corruption).kind == option
    if group == "dataset":
        assert instantiate(cfg.dataset).name == option


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


@pytest.mark.parametrize("preset", ["table1", "table4", "fig1a", "fig1bc", "fig2b", "wd_sweep"])
def test_presets_train_the_whole_budget(preset):
    cfg = composed(f"experiment={preset}", "scale=paper")
    assert cfg.trainer.stop_at_target is False and cfg.trainer.max_epochs == cfg.model.paper.max_epochs
    assert composed().trainer.stop_at_target is True  # a single run still stops at the target


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
