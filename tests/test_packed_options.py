"""Packed == solo for every option: each trainer / regularizer key of a job's identity (read from the composed
config, so a new key fails here until it is classified) either trains the same in a pack as alone, epoch by
epoch, or keeps the job out of packs (`pack_key` None, and `train_pack` refuses it). Never silently ignored."""

import pytest
import torch
from conftest import composed
from test_packed import small

from rethink import compose
from rethink.errors import RethinkError
from rethink.run import identity
from rethink.sweep import packs
from rethink.training.fit import fit
from rethink.training.packed_loop import Member, train_pack

# Small jobs, 3 epochs of 2 steps, decaying per epoch (not per 391 steps as at scale=cpu), float64 (below).
BASE = ["model=mlp_1x512", "model.net.hidden_sizes=[32]", "corruption.level=0.5", "trainer.max_epochs=3",
        "trainer.stop_at_target=false", "trainer.lr_decay_period=null", "trainer.lr_decay=0.5", "trainer.device=cpu",
        "trainer.checkpoint_every=0", "trainer.batch_size=32"]
# key -> (overrides that change it, how packing treats it): `member` = each member its own value (one pack holds
# a default member and a changed one), `shared` = part of pack_key (every member of the pack has it), `alone` =
# the stacked loop cannot honour it: the job trains alone.
OPTIONS = {
    "trainer.batch_size": (["trainer.batch_size=16"], "shared"),
    "trainer.max_epochs": (["trainer.max_epochs=2"], "member"),
    "trainer.target_train_acc": (["trainer.stop_at_target=true", "trainer.target_train_acc=0.1"], "member"),
    "trainer.stop_at_target": (["trainer.stop_at_target=true", "trainer.target_train_acc=0.1"], "member"),
    "trainer.patience": (["trainer.patience=1", "trainer.lr=1e-9"], "member"),  # no progress: a stall
    "trainer.lr": (["trainer.lr=0.05"], "member"),
    "trainer.optimizer": (["trainer.optimizer=adam"], "alone"),
    "trainer.momentum": (["trainer.momentum=0.5"], "member"),
    "trainer.rmsprop_decay": (["trainer.rmsprop_decay=0.5"], "member"),  # read by rmsprop_tf only
    "trainer.rmsprop_eps": (["trainer.rmsprop_eps=0.5"], "member"),  # read by rmsprop_tf only
    "trainer.label_smoothing": (["trainer.label_smoothing=0.1"], "alone"),
    "trainer.aux_weight": (["trainer.aux_weight=0.2"], "member"),  # read for an auxiliary head only
    "trainer.lr_decay": (["trainer.lr_decay=0.9"], "member"),
    "trainer.lr_decay_period": (["trainer.lr_decay_period=1"], "member"),
    "trainer.lr_decay_epochs": (["trainer.lr_decay_epochs=2"], "member"),
    "trainer.channels_last": (["trainer.channels_last=true"], "shared"),
    "trainer.amp": (["trainer.amp=true"], "shared"),
    "regularizer.weight_decay": (["regularizer.weight_decay=0.01"], "member"),
    "regularizer.weight_decay_on": (["regularizer.weight_decay=0.01", "regularizer.weight_decay_on=all"], "member"),
    "regularizer.random_crop": (["regularizer.random_crop=true"], "member"),
    "regularizer.flip": (["regularizer.flip=true"], "member"),
    "regularizer.rotate": (["regularizer.rotate=25"], "member"),
    "regularizer.dropout": (["regularizer.dropout=0.5"], "alone"),
    "model.init": (["model.init=torch"], "member"),
}


@pytest.fixture()
def float64():
    """In float64 a pack and its solo runs agree to ~1e-12 (they sum in other orders), so any real difference shows."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_every_trainer_and_regularizer_key_of_the_identity_is_classified():
    keys = [k for k in identity.identity_values(composed(*BASE)) if k.startswith(("trainer.", "regularizer."))]
    assert sorted(set(keys) - set(OPTIONS)) == [], "classify the new key in OPTIONS (and make packing honour or refuse it)"


def job(overrides: list[str]) -> tuple:
    """A job as the launcher would run it: its config, settings, model (seeded) and corrupted data."""
    cfg = composed(*BASE, *overrides)
    parts = compose.job_parts(cfg)
    side = int(cfg.dataset.crop_size or 32)
    torch.manual_seed(int(cfg.seed))
    model = compose.build(cfg.model.net, num_classes=10, in_shape=[3, side, side])
    return cfg, parts.settings, model, parts.corruption.apply(small(64, 16))


def solo(overrides: list[str]):
    """The job trained alone (`fit`, as a solo job does)."""
    _, s, model, data = job(overrides)
    return fit(model, data, s)


@pytest.mark.parametrize("key", sorted(OPTIONS))
def test_a_pack_trains_each_option_as_the_job_alone_or_keeps_the_job_out(key, float64):
    overrides, how = OPTIONS[key]
    if how == "alone":
        cfg, s, model, data = job(overrides)
        assert packs.pack_key(cfg) is None
        with pytest.raises(RethinkError, match="cannot pack"):
            train_pack([Member(model, data, s)])
        return
    pair = [overrides if how == "shared" else [], overrides]  # a default member beside a changed one
    jobs = [job(o) for o in pair]
    assert packs.pack_key(jobs[0][0]) == packs.pack_key(jobs[1][0]) is not None  # the planner packs them together
    results = [None, None]
    train_pack([Member(m, d, s, done=lambda r, j=j: results.__setitem__(j, r)) for j, (_, s, m, d) in enumerate(jobs)])
    for o, packed in zip(pair, results, strict=True):
        alone = solo(o)
        assert packed.stop_reason == alone.stop_reason
        assert [h["epoch"] for h in packed.history] == [h["epoch"] for h in alone.history]
        for a, b in zip(alone.history, packed.history, strict=True):
            for k in ("train/loss", "train/eval_loss", "test/loss", "lr"):
                assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), (key, k, a["epoch"])
            for k in ("train/acc", "test/acc", "train/running_acc", "step"):
                assert b[k] == a[k], (key, k, a["epoch"])
