"""A job's identity must not move: a changed hash would silently retrain every FINISHED job.

The hashes below were computed by the code before the architecture change (identity in
rethink/run/track.py, 2026-11-28) for composed configs and for the committed imported GPU records.
Keys added since then that change what a job computes (`identity.LEGACY_DEFAULTS`) are set to
their legacy values for `TRAINING`: with them the old hashes must come back exactly.
"""

import json
from pathlib import Path

import pytest
from conftest import composed as compose_overrides
from omegaconf import OmegaConf

from rethink.__main__ import normalize_argv
from rethink.jobs.importer import params_of
from rethink.run import identity
from rethink.theory.jobs import identity as theory_identity

REPO = Path(__file__).resolve().parents[1]
TRAINING = {
    "": "6250a1a76185a9c4",
    "corruption=labels corruption.level=0.2": "af51637080bcc170",
    "corruption=0.2": "af51637080bcc170",  # the CLI shorthand, normalized by rethink.__main__
    "corruption=labels corruption.level=1.0": "b3e85b2b3bbfe373",
    "corruption=random_labels": "b3e85b2b3bbfe373",
    "model=alexnet corruption=random_pixels": "ccb3fb60ccd9cd7a",
    "model=inception scale=paper": "78fb7921d2bd2ba1",
    "model=inception_nobn corruption=gaussian regularizer=[weight_decay,random_crop]": "41996c251f316628",
    "model=mlp_3x512 corruption=shuffled_pixels seed=3": "208b3d9750a46a7d",
    "row=t1_alexnet_crop_wd scale=paper": "137dac4489454360",
    "dataset=mnist regularizer=dropout": "852da5506fedaf78",
    "regularizer=random_crop regularizer.flip=true trainer.max_epochs=7": "916246ca8870311b",  # the old `augment`
    "dataset=imagefolder dataset.root=/x dataset.num_classes=3 dataset.input_shape=[3,16,16]": "7ca9b750d25747ef",
    # keys that do not change results leave the identity alone
    "trainer.device=cpu trainer.eval_batch_size=64 trainer.checkpoint_every=2 rerun=true": "6250a1a76185a9c4",
    "mlflow.experiment=other paths.checkpoints=/tmp/ck": "6250a1a76185a9c4",
}
THEORY = {
    "task=kernel": "5de95f10427325ce",
    "task=kernel task.device=cpu task.threads=1": "5de95f10427325ce",
    "task=expressivity task.data=gaussian": "a8dc39ca6433beaf",
    "task=minnorm task.start=random": "e81c8b53e7b8defd",
}
# The defaults once `model.init`, Inception's `model.net.conv_module` and the per-model budgets came: new
# hashes, pinned too.
CURRENT = {
    "": "6d0049a1f99b41aa",
    "model=inception scale=paper": "5edac1a856434b47",
    "model=inception_nobn": "1dafe2f1ab7200c1",
}
IMPORTED = {
    "alexnet-labels0-none-s0.json": "f9654106d242cedc",
    "inception-labels0-none-s0.json": "5a5a916d9ce2089a",
    "mlp_1x512-labels0-none-s0.json": "de74c6e6714b5b48",
    "mlp_1x512-labels0.5-none-s0.json": "110e73d2b5a89b1a",
    "mlp_1x512-labels1-none-s0.json": "c7f11809222c3c76",
}


def composed(overrides: str):
    """The config of a command line's overrides (the `corruption=<p>` shorthand included)."""
    return compose_overrides(*normalize_argv(overrides.split()))


# The budgets before each model had its own per scale (2026-11-29): a changed budget is a new job, on purpose.
OLD_CPU_BUDGETS = {"mlp_1x512": (20000, None, 150), "mlp_3x512": (20000, None, 150), "alexnet": (500, 500, 60),
                   "inception": (200, 100, 30), "inception_nobn": (200, 100, 30)}


def legacy(overrides: str) -> str:
    """`overrides` plus the legacy value of every `LEGACY_DEFAULTS` key its config has, and the old budget."""
    cfg = composed(overrides)
    extra = [f"{k}={v}" for k, v in identity.LEGACY_DEFAULTS.items()
             if OmegaConf.select(cfg, k) is not None and k != "model.net.init"]  # that one follows model.init
    if cfg.task.name == "train":
        paper = cfg.dataset.train_size is None
        train, test, epochs = (None, None, 200) if paper else OLD_CPU_BUDGETS[cfg.model.name]
        old = {"trainer.max_epochs": epochs} | ({} if paper else {"dataset.train_size": train, "dataset.test_size": test})
        extra += [f"{k}={'null' if v is None else v}" for k, v in old.items() if k not in overrides]
    return " ".join([overrides, *extra]).strip()


@pytest.fixture(autouse=True)
def default_data_root(monkeypatch):
    monkeypatch.delenv("RETHINK_DATA", raising=False)  # dataset.root = "data", as when the hashes were taken


@pytest.mark.parametrize("overrides, expected", TRAINING.items())
def test_training_identity_is_pinned(overrides, expected):
    assert identity.config_hash(composed(legacy(overrides))) == expected


@pytest.mark.parametrize("overrides, expected", CURRENT.items())
def test_current_default_identity_is_pinned(overrides, expected):
    assert identity.config_hash(composed(overrides)) == expected


@pytest.mark.parametrize("model", ["mlp_1x512", "mlp_3x512", "alexnet", "inception", "inception_nobn"])
def test_new_defaults_are_not_the_old_runs(model):
    """The new defaults compute something else: an old run must not be reused for them."""
    old = identity.config_hash(composed(legacy(f"model={model}")))
    assert identity.config_hash(composed(f"model={model}")) != old


def test_a_legacy_key_is_dropped_only_at_its_legacy_value():
    old = identity.config_hash(composed(legacy("model=inception")))
    # model.init reaches the net by interpolation: at the legacy value both forms leave the hash
    assert identity.config_hash(composed("model=inception model.init=torch model.net.conv_module=bias_bn_noaffine "
                                         "dataset.train_size=200 dataset.test_size=100 trainer.max_epochs=30")) == old
    for other in ("model.init=glorot", "model.net.init=glorot", "model.net.conv_module=tf_slim"):
        assert identity.config_hash(composed(legacy("model=inception") + " " + other)) != old, other


@pytest.mark.parametrize("overrides, expected", THEORY.items())
def test_theory_identity_is_pinned(overrides, expected):
    assert theory_identity(composed(overrides).task) == expected


@pytest.mark.parametrize("name, expected", IMPORTED.items())
def test_imported_record_identity_is_pinned(name, expected):
    rec = json.loads((REPO / "docs/results/gpu-h200/paper_runs" / name).read_text())
    assert identity.hash_values(params_of(rec)) == expected


def test_identity_changes_with_what_a_job_computes():
    base = identity.config_hash(composed(""))
    for overrides in ("seed=1", "trainer.lr=0.02", "corruption=0.5", "dataset.train_size=1000", "regularizer=weight_decay"):
        assert identity.config_hash(composed(overrides)) != base, overrides


def test_a_legacy_default_hashes_as_if_absent():
    base = {"seed": 0, "model.name": "inception"}
    for key, old in identity.LEGACY_DEFAULTS.items():
        assert identity.hash_values(base | {key: old}) == identity.hash_values(base), key
        assert identity.hash_values(base | {key: "other"}) != identity.hash_values(base), key
