"""What a training run records: typed identity params without duplicates, purpose tags, the run
name, the description, and content digests of its data."""

import pytest
import torch
from conftest import composed
from hydra.utils import instantiate

from rethink.corrupt import Corruption
from rethink.data.memory import ImageData
from rethink.run import identity, record


def test_params_are_the_identity_keys_once_each_with_natural_types():
    cfg = composed("corruption=labels", "corruption.level=0.5")
    params = record.params(cfg, instantiate(cfg.corruption))
    assert params["seed"] == "0" and params["corruption.level"] == "0.5" and params["trainer.batch_size"] == "128"
    assert params["regularizer.random_crop"] == "False" and params["model.net.hidden_sizes"] == "[512]"
    assert params["model.lr"] == "0.01" and "trainer.lr" not in params  # trainer.lr: ${model.lr} repeats it
    assert "corruption.seed" not in params  # ${seed}
    for prefix in ("choice.", "mlflow.", "paths.", "model.cpu.", "sweep_levels", "hydra.", "task."):
        assert not [k for k in params if k.startswith(prefix)], prefix
    # Every param is part of the identity: the logged keys are a subset of the hashed ones.
    hashed = identity.without(identity.flatten(cfg), identity.NON_IDENTITY_KEYS + ("task",))
    assert set(params) <= set(hashed) and len(params) < 40


def test_an_overridden_reference_is_logged_under_its_own_key():
    cfg = composed("trainer.lr=0.05")
    params = record.params(cfg, instantiate(cfg.corruption))
    assert params["trainer.lr"] == "0.05" and params["model.lr"] == "0.01"


def test_the_corruption_level_is_logged_as_the_built_corruption_has_it():
    cfg = composed("corruption=labels", "corruption.level=1")  # an integer on the command line
    assert cfg.corruption.level == 1 and record.params(cfg, instantiate(cfg.corruption))["corruption.level"] == "1.0"


@pytest.mark.parametrize("overrides, budget", [
    (["corruption=labels", "corruption.level=0.5", "model=alexnet", "seed=2"], "standard"),
    (["row=t1_mlp_1x512", "scale=paper", "mlflow.tracking_uri=sqlite:///x.db", "hydra.job.num=3"], "standard"),
    (["dataset.train_size=200", "corruption.level=1.0"], "custom"),
    (["trainer.max_epochs=2"], "custom"),
])
def test_purpose_tags_tell_a_standard_budget_from_a_custom_one(overrides, budget):
    tags = record.purpose({"choices": {"scale": "cpu", "experiment": "fig1bc", "row": None}, "overrides": overrides})
    assert tags["budget"] == budget and tags["scale"] == "cpu" and tags["paper"] == "fig1bc" and "row" not in tags
    assert ("budget_overrides" in tags) == (budget == "custom")
    if budget == "custom":
        assert tags["budget_overrides"] == next(o for o in overrides if not o.startswith("corruption"))


def test_what_a_preset_sweeps_is_its_standard_budget():
    hctx = {"choices": {"scale": "cpu", "experiment": "wd_sweep"}, "swept": ["model", "regularizer.weight_decay"],
            "overrides": ["model=alexnet", "regularizer.weight_decay=0.004"]}
    assert record.purpose(hctx)["budget"] == "standard"
    assert record.purpose(hctx | {"swept": []})["budget_overrides"] == "regularizer.weight_decay=0.004"


def test_run_names_lead_with_what_varies():
    none = {"weight_decay": 0.0, "random_crop": False, "flip": False, "dropout": 0.0}
    assert record.run_name("mlp_1x512", "labels", 0.5, none, 0, "cpu") == "p=0.5 mlp_1x512 cpu"
    regs = none | {"weight_decay": 5e-4, "random_crop": True}
    assert record.run_name("alexnet", "random_pixels", 1.0, regs, 2, "paper") == "p=1 alexnet random_pixels +wd+crop paper s2"
    assert record.run_name("alexnet", "labels", 1.0, none | {"weight_decay": 0.004}, 0, "cpu") == "p=1 alexnet +wd0.004 cpu"
    augment = composed("regularizer=augment").regularizer  # the paper's Table 4 augmentation: flip + rotation
    assert record.run_name("inception", "labels", 1.0, augment, 0, "cpu") == "p=1 inception +flip+rot cpu"


def test_description_names_the_test_and_the_paper_figure():
    cfg = composed("experiment=fig1bc", "corruption.level=0.2")
    tags = record.purpose({"choices": {"scale": "cpu", "experiment": "fig1bc"}, "overrides": ["model=alexnet"]})
    text = record.description(cfg, Corruption("labels", 0.2), 20000, tags)
    assert "20% of the training labels replaced by labels drawn uniformly at random" in text
    assert "Fig. 1b/1c (preset `fig1bc`)" in text and "20,000 training images, scale=cpu" in text
    assert "budget: standard" in text


def test_dataset_digests_follow_the_content():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(40) % 4
    data = ImageData(x, y, x[:10].clone(), y[:10].clone(), list("abcd"))
    cfg = composed("dataset=imagefolder", "dataset.root=/tmp", "corruption=labels", "corruption.level=1.0")

    def inputs(d, seed=0):
        corruption = Corruption("labels", 1.0, seed=seed)
        return {i["context"]: i["digest"] for i in record.dataset_inputs(cfg, corruption, d, corruption.apply(d))}

    base = inputs(data)
    copy = data.train_x.clone()
    copy[0, 0, 0, 0] ^= 1  # one pixel of one image differs (e.g. a re-encoded copy)
    other = inputs(ImageData(copy, y, data.test_x, data.test_y, data.classes))
    assert other["training"] != base["training"] and other["evaluation"] == base["evaluation"]
    redrawn = inputs(data, seed=1)
    assert redrawn["training"] == base["training"] and redrawn["training, after corruption"] != base["training, after corruption"]
