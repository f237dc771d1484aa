"""Packed training (`hydra/launcher=packed`): a pack reproduces its members' solo runs, members leave
when they stop, checkpoints are solo ones, and the launcher keeps one MLflow run per job."""

import copy

import pytest
import torch
from conftest import composed, run_cli, search_runs
from test_numerics import tiny_problem

from rethink.corrupt import Corruption
from rethink.data.memory import ImageData
from rethink.errors import RethinkError
from rethink.models import MLP, SmallAlexNet, SmallInception
from rethink.sweep import packs as packing
from rethink.training.fit import fit
from rethink.training.packed_loop import Member, train_pack
from rethink.training.settings import TrainSettings

MODELS = {
    "mlp_1x512": lambda: MLP((3, 28, 28), 10, [512], init="glorot"),
    "mlp_3x512": lambda: MLP((3, 28, 28), 10, [512, 512, 512], init="glorot"),
    "alexnet": lambda: SmallAlexNet((3, 28, 28), 10, init="glorot"),
    "inception": lambda: SmallInception((3, 28, 28), 10, conv_module="tf_slim", init="glorot"),
    "inception_nobn": lambda: SmallInception((3, 28, 28), 10, batchnorm=False, init="glorot"),
}
# Three members that differ in everything a member owns: corruption, seed, regularizers, LR.
MEMBERS = [(Corruption(kind="labels", level=0.5, seed=0), dict(seed=0)),
           (Corruption(kind="random_pixels", level=1.0, seed=1), dict(seed=1, weight_decay=5e-4, lr=0.02)),
           (Corruption(kind="labels", level=1.0, seed=2), dict(seed=2, random_crop=True, flip=True, rotate=25.0))]


@pytest.fixture()
def float64():
    """Solo and packed runs sum in different orders (vmap's grouped convolutions): in float64 their
    trajectories agree to ~1e-12, so any real difference shows."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def small(n_train: int, n_test: int) -> ImageData:
    d = tiny_problem()
    return ImageData(d.train_x[:n_train], d.train_y[:n_train], d.test_x[:n_test], d.test_y[:n_test], d.classes)


def settings(**kw) -> TrainSettings:
    return TrainSettings(**({"lr": 0.01, "max_epochs": 2, "stop_at_target": False, "device": "cpu", "crop_size": 28,
                             "lr_decay_period": 2, "channels_last": False, "checkpoint_every": None} | kw))


def members_and_solos(make, data: ImageData, **kw) -> tuple[list[Member], list[list[dict]], list]:
    members, solos, results = [], [], [None] * len(MEMBERS)
    for j, (corruption, own) in enumerate(MEMBERS):
        corrupted, s = corruption.apply(data), settings(**(kw | own))
        torch.manual_seed(own["seed"])
        solos.append(fit(make(), corrupted, s).history)
        torch.manual_seed(own["seed"])
        members.append(Member(make(), corrupted, s, done=lambda r, j=j: results.__setitem__(j, r), name=f"m{j}"))
    return members, solos, results


@pytest.mark.parametrize("name", list(MODELS))
def test_a_pack_reproduces_its_members_solo_runs(name, float64):
    # Small enough for float64 on 2 cores (vmap's grouped convolutions are slow on a CPU): 2 steps per epoch.
    n, batch = {"alexnet": (32, 16), "inception": (16, 8), "inception_nobn": (16, 8)}.get(name, (64, 32))
    members, solos, results = members_and_solos(MODELS[name], small(n, 8), batch_size=batch)
    train_pack(members)
    for solo, res in zip(solos, results, strict=True):
        assert len(res.history) == len(solo) == 2
        for a, b in zip(solo, res.history, strict=True):
            for key in ("train/loss", "train/eval_loss", "test/loss", "lr"):
                assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), key
            for key in ("train/acc", "test/acc", "train/running_acc", "step"):
                assert b[key] == a[key], key


def test_members_leave_when_they_stop_and_checkpoint_as_solo_runs(float64):
    data = small(96, 32)
    make = MODELS["mlp_1x512"]
    corrupted = [c.apply(data) for c, _ in MEMBERS[:2]]
    # Member 0 stops at a target it reaches early; member 1 trains 3 epochs and checkpoints after each.
    s0 = settings(max_epochs=3, stop_at_target=True, target_train_acc=0.15, seed=0)
    s1 = settings(max_epochs=3, checkpoint_every=1, seed=1, weight_decay=5e-4)
    ckpts, results = [], {}
    torch.manual_seed(0)
    m0 = Member(make(), corrupted[0], s0, done=lambda r: results.__setitem__(0, r))
    torch.manual_seed(1)
    m1 = Member(make(), corrupted[1], s1, on_checkpoint=lambda st: ckpts.append(copy.deepcopy(st)),
                done=lambda r: results.__setitem__(1, r))
    train_pack([m0, m1])
    assert results[0].stop_reason == "target" and results[0].epochs < 3 == len(results[1].history)
    assert results[1].stop_reason == "max_epochs" and results[1].epochs == 3
    assert [c["epoch"] for c in ckpts] == [1, 2]  # none after the last epoch, as solo
    # The epoch-1 checkpoint resumes solo and follows the packed member's epochs 2 and 3.
    torch.manual_seed(1)
    # (each resume gets its own copy: loading a state dict shares its tensors, which training then updates)
    resumed = fit(make(), corrupted[1], s1, resume=copy.deepcopy(ckpts[0])).history
    for a, b in zip(resumed[1:], results[1].history[1:], strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-9) and a["test/acc"] == b["test/acc"]
    # ...and a pack resumes from it too, to the same end.
    out = {}
    torch.manual_seed(1)
    train_pack([Member(make(), corrupted[1], s1, resume=copy.deepcopy(ckpts[0]), done=lambda r: out.__setitem__(1, r))])
    assert out[1].history[-1]["train/loss"] == pytest.approx(results[1].history[-1]["train/loss"], rel=1e-9)


def test_incompatible_members_are_refused():
    data = Corruption().apply(small(64, 16))
    with pytest.raises(RethinkError, match="other architecture"):
        train_pack([Member(MODELS["mlp_1x512"](), data, settings()), Member(MODELS["mlp_3x512"](), data, settings())])
    with pytest.raises(RethinkError, match="trainer.batch_size"):
        train_pack([Member(MODELS["mlp_1x512"](), data, settings()),
                    Member(MODELS["mlp_1x512"](), data, settings(batch_size=64))])


def test_plan_groups_compatible_jobs_in_job_order():
    jobs = [composed("model=mlp_1x512", "corruption=labels", f"corruption.level={p}") for p in (0, 0.5, 1)]
    jobs += [composed("model=alexnet"), composed("model=mlp_1x512", "regularizer=weight_decay", "seed=3"),
             composed("model=mlp_1x512", "trainer.compile=true"), composed("task=kernel")]
    assert packing.plan(jobs, 2) == [[0, 1], [2, 4], [3], [5], [6]]
    assert packing.plan(jobs, 4) == [[0, 1, 2, 4], [3], [5], [6]]
    assert packing.plan(jobs, "auto") == [[i] for i in range(7)]  # auto on a CPU: no packing (it does not pay)
    assert packing.plan([composed("model=mlp_1x512", "model.init=torch"), jobs[0]], 2) == [[0, 1]]  # init: not shape
    # The same job twice in one sweep (e.g. a swept key outside the identity): the repeat runs alone, after
    # the first (and is skipped then), never in the same pack, where its lock would find the first still running.
    assert packing.plan([jobs[0], jobs[1], composed("model=mlp_1x512", "corruption=labels", "corruption.level=0",
                                                    "rerun=false")], 3) == [[0, 1], [2]]
    # Jobs already FINISHED are skipped: packs are made of the others (not [0, 1] + [2, 4] with 0 and 1 skipped).
    assert packing.plan(jobs, 2, finished=lambda c: c is jobs[0] or c is jobs[1]) == [[0], [1], [2, 4], [3], [5], [6]]
    with pytest.raises(RethinkError, match="hydra.launcher.k=0"):
        packing.plan(jobs, 0)


def test_packed_sweep_keeps_one_run_per_job_like_solo(tmp_path, data_root):
    (tmp_path / "packed").mkdir(), (tmp_path / "solo").mkdir()
    common = ["model=mlp_1x512", "dataset.train_size=200", "dataset.test_size=100", "trainer.max_epochs=2"]
    res = run_cli(["-m", "hydra/launcher=packed", "hydra.launcher.k=3", "corruption=0,1.0", "seed=0,1", *common],
                  tmp_path / "packed", data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Launching 4 jobs in 2 pack(s) of up to 3" in res.stdout and "training a pack of 3 member(s)" in res.stdout
    packed = search_runs(tmp_path / "packed")
    assert len(packed) == 4 and set(packed["status"]) == {"FINISHED"}
    by_id = packed.set_index("run_id")
    for run_id, partners in by_id["tags.packed_with"].dropna().items():  # the first pack's 3 members name each other
        assert run_id not in partners and all(p in by_id.index for p in partners.split(","))
    assert by_id["tags.packed_with"].notna().sum() == 3
    # The same job solo: the same params, metrics and numbers (float32 here: to a tolerance).
    solo = run_cli(["corruption=1.0", "seed=1", *common], tmp_path / "solo", data_root)
    assert solo.returncode == 0, solo.stderr[-3000:]
    one = search_runs(tmp_path / "solo").iloc[0]
    twin = packed[packed["tags.config_hash"] == one["tags.config_hash"]].iloc[0]
    params = [c for c in packed.columns if c.startswith("params.")]
    assert twin[params].to_dict() == one[params].to_dict()
    metrics = sorted(c for c in one.index if c.startswith("metrics.") and not pd_isna(one[c]))
    assert sorted(c for c in twin.index if c.startswith("metrics.") and not pd_isna(twin[c])) == metrics
    for key in ("metrics.train/loss", "metrics.train/acc", "metrics.test/acc"):
        assert twin[key] == pytest.approx(one[key], rel=1e-3, abs=1e-2)
    # A second packed sweep skips what FINISHED, as every launcher does.
    again = run_cli(["-m", "hydra/launcher=packed", "hydra.launcher.k=3", "corruption=0,1.0", "seed=0,1", *common],
                    tmp_path / "packed", data_root)
    assert again.returncode == 0 and again.stdout.count("skip: an identical job") == 4
    assert "Launching 4 jobs in 4 pack(s) of up to 3" in again.stdout and "4 already FINISHED" in again.stdout
    # A sweep that adds jobs packs only the new ones, whatever their place in the sweep; with processes=2 the
    # packs run two at a time, each in a worker process.
    more = run_cli(["-m", "hydra/launcher=packed", "hydra.launcher.k=3", "hydra.launcher.processes=2",
                    "corruption=0,0.5,1.0", "seed=0,1", *common], tmp_path / "packed", data_root)
    assert more.returncode == 0 and "Launching 6 jobs in 5 pack(s) of up to 3" in more.stdout, more.stdout[-3000:]
    assert "Training up to 2 packs at once" in more.stdout and "training a pack of 2 member(s)" in more.stdout
    assert more.stdout.count("skip: an identical job") == 4
    runs = search_runs(tmp_path / "packed")
    assert len(runs) == 6 and set(runs["status"]) == {"FINISHED"}
    new = runs[runs["params.corruption.level"] == "0.5"]
    assert len(new) == 2 and set(new["tags.packed_with"]) == set(new["run_id"][::-1])  # the new pair named each other


def pd_isna(v) -> bool:
    return v is None or v != v
