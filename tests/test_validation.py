"""Bad config values stop with one line naming the value and what is allowed, before any run exists:
directly through the specs (TrainSettings, the models' dropout), and a few through the real CLI."""

import pytest
from conftest import run_cli, search_runs
from test_data import write_tree

from rethink.errors import RethinkError
from rethink.models import MLP, SmallInception, count_params
from rethink.training.settings import TrainSettings


@pytest.mark.parametrize("bad, message", [
    (dict(lr=float("inf")), "trainer.lr=inf is not allowed: use a finite number > 0"),
    (dict(lr=float("nan")), "trainer.lr=nan is not allowed: use a finite number > 0"),
    (dict(lr=-1), "trainer.lr=-1 is not allowed: use a finite number > 0"),
    (dict(lr="abc"), "trainer.lr='abc' is not allowed: use a finite number > 0"),
    (dict(batch_size="abc"), "trainer.batch_size='abc' is not allowed: use an integer > 0"),
    (dict(batch_size=True), "trainer.batch_size=True is not allowed: use an integer > 0"),
    (dict(max_epochs=2.5), "trainer.max_epochs=2.5 is not allowed: use an integer > 0"),
    (dict(target_train_acc="x"), "trainer.target_train_acc='x' is not allowed: use a number in (0, 1]"),
    (dict(momentum=1.0), "trainer.momentum=1.0 is not allowed: use a number in [0, 1)"),
    (dict(lr_decay=float("nan")), "trainer.lr_decay=nan is not allowed: use a number in (0, 1]"),
    (dict(stop_at_target="yes"), "trainer.stop_at_target='yes' is not allowed: use true or false"),
    (dict(patience=0), "trainer.patience=0 is not allowed: use null or an integer > 0"),
    (dict(eval_batch_size="big"), "trainer.eval_batch_size='big' is not allowed: use auto or an integer > 0"),
    (dict(device="tpu"), "trainer.device='tpu' is not allowed: use auto, cpu or cuda"),
    (dict(channels_last="on"), "trainer.channels_last='on' is not allowed: use auto, true or false"),
    (dict(amp=1), "trainer.amp=1 is not allowed: use auto, true or false"),
    (dict(compile="no"), "trainer.compile='no' is not allowed: use true or false"),
    (dict(checkpoint_every=-1), "trainer.checkpoint_every=-1 is not allowed: use null or an integer >= 0"),
    (dict(weight_decay=float("nan")), "regularizer.weight_decay=nan is not allowed: use a finite number >= 0"),
    (dict(weight_decay=-0.1), "regularizer.weight_decay=-0.1 is not allowed: use a finite number >= 0"),
    (dict(weight_decay_on="biases"), "regularizer.weight_decay_on='biases' is not allowed: use weights or all"),
    (dict(random_crop="yes"), "regularizer.random_crop='yes' is not allowed: use true or false"),
    (dict(flip=1), "regularizer.flip=1 is not allowed: use true or false"),
    (dict(rotate=-5), "regularizer.rotate=-5 is not allowed: use a number of degrees in [0, 180]"),
    (dict(crop_size=0), "dataset.crop_size=0 is not allowed: use null or an integer > 0"),
    (dict(seed=-1), "seed=-1 is not allowed: use an integer >= 0"),
    (dict(seed="x"), "seed='x' is not allowed: use an integer >= 0"),
])
def test_train_settings_refuse_bad_values(bad, message):
    with pytest.raises(RethinkError) as e:
        TrainSettings(**({"device": "cpu"} | bad))
    assert str(e.value) == message


def test_train_settings_accept_good_values_and_ints_for_floats():
    s = TrainSettings(device="cpu", lr=1, momentum=0, weight_decay=0, target_train_acc=1, patience=3, eval_batch_size=64,
                      channels_last=True, amp=False, checkpoint_every=0, crop_size=28, seed=7)
    assert s.lr == 1 and s.seed == 7


@pytest.mark.parametrize("p", [1.0, -0.1, float("nan"), "half", True])
@pytest.mark.parametrize("build", [lambda p: MLP((1, 4, 4), 10, [8], dropout=p),
                                   lambda p: SmallInception((1, 8, 8), 10, dropout=p)])
def test_dropout_is_checked_where_the_models_take_it(build, p):
    with pytest.raises(RethinkError, match=r"^regularizer\.dropout=.* is not allowed: use a number in \[0, 1\)$"):
        build(p)


def test_dropout_in_range_builds():
    assert MLP((1, 4, 4), 10, [8], dropout=0.5)[-2].p == 0.5


# --- through the real CLI (each a subprocess: kept few) ---------------------------------------

TINY = ["dataset.train_size=300", "dataset.test_size=100", "trainer.max_epochs=1"]


@pytest.mark.parametrize("args, message", [
    (["trainer.lr=inf"], "trainer.lr=inf is not allowed: use a finite number > 0"),
    (["trainer.lr=-1"], "trainer.lr=-1 is not allowed: use a finite number > 0"),
    (["regularizer.weight_decay=nan"], "regularizer.weight_decay=nan is not allowed: use a finite number >= 0"),
    (["trainer.batch_size=abc"], "trainer.batch_size='abc' is not allowed: use an integer > 0"),
    (["corruption.level=abc"], "corruption.level='abc' is not allowed: use a number in [0, 1]"),
    (["dataset.train_size=999999"], "dataset.train_size=999999 is not allowed: the training split of {data} holds 50000 "
                                    "images; use null (all) or at most 50000"),
    (["dataset.root=/nonexistent/rethink-data"], "dataset.root=/nonexistent/rethink-data does not exist, nor does "
     "/nonexistent: point it at the data, or at a new folder inside an existing one to download into"),
    (["dataset=imagefolder"], "dataset.root=None is not allowed: use the path of the folder that holds the data"),
    (["regularizer.random_crop=yes"], "regularizer.random_crop='yes' is not allowed: use true or false"),
])
def test_bad_input_gets_one_clear_line_and_no_run(tmp_path, data_root, args, message):
    res = run_cli([*TINY, *args], tmp_path, data_root)  # args last: they override TINY
    assert res.returncode != 0
    assert message.format(data=data_root) in res.stderr.splitlines(), res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    db = tmp_path / "mlruns" / "mlflow.db"
    assert not db.exists() or search_runs(tmp_path).empty  # nothing half-written


def test_imagefolder_job_infers_classes_and_input_shape(tmp_path, data_root):
    tree = write_tree(tmp_path / "tree", {"train": {"a": 4, "b": 4, "c": 4}, "test": {"a": 2, "b": 2}}, size=8, mode="L")
    res = run_cli(["dataset=imagefolder", f"dataset.root={tree}", "dataset.train_size=null", "dataset.test_size=null",
                   "trainer.max_epochs=1"], tmp_path, data_root, env={"RETHINK_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-3000:]
    run = search_runs(tmp_path).iloc[0]
    assert run["status"] == "FINISHED"
    assert run["params.num_params"] == str(count_params(MLP((1, 8, 8), 3, [512])))
