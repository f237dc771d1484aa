"""The parts fit() is built from: LR schedule, stopping rule, runtime policy, statistics, resume."""

import contextlib
import warnings

import pytest
import torch
from test_numerics import tiny_problem

from rethink.corrupt import Corruption
from rethink.data.memory import ImageData
from rethink.models import MLP, SmallAlexNet
from rethink.run.lifecycle import load_checkpoint, save_checkpoint
from rethink.training.fit import fit
from rethink.training.memory_loop import DeviceData, epoch_statistics
from rethink.training.progress import StoppingRule
from rethink.training.runtime import Runtime, resolve_device, resolve_runtime
from rethink.training.schedule import lr_at
from rethink.training.settings import TrainSettings


def small_problem(n_train: int, n_test: int):
    """The first examples of test_numerics' tiny problem, with 50% of the labels corrupted."""
    d = tiny_problem()
    sub = ImageData(d.train_x[:n_train], d.train_y[:n_train], d.test_x[:n_test], d.test_y[:n_test], d.classes)
    return Corruption(kind="labels", level=0.5, seed=0).apply(sub)


def without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "epoch_time"} for h in history]


# --- lr_at ---------------------------------------------------------------------------------

def test_lr_at_per_step_schedule_decays_every_period_steps():
    lrs = [lr_at(step, 0.01, 0.95, 2) for step in range(7)]
    assert lrs == [0.01, 0.01, 0.01 * 0.95, 0.01 * 0.95, 0.01 * 0.95**2, 0.01 * 0.95**2, 0.01 * 0.95**3]


def test_lr_at_per_epoch_schedule_is_constant_within_an_epoch():
    steps_per_epoch = 391  # CIFAR-10, batch 128
    for epoch in range(5):
        first, last = epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch - 1
        assert lr_at(first, 0.1, 0.95, steps_per_epoch) == lr_at(last, 0.1, 0.95, steps_per_epoch) == 0.1 * 0.95**epoch


@pytest.mark.parametrize("base_lr, decay, period", [(0.01, 0.95, 3), (0.1, 0.9, 391), (0.05, 1.0, 1), (1e-3, 0.5, 7)])
def test_lr_at_equals_the_formula_it_replaces_bit_for_bit(base_lr, decay, period):
    for step in range(0, 5000, 13):
        assert lr_at(step, base_lr, decay, period) == base_lr * decay ** (step // period)


# --- StoppingRule --------------------------------------------------------------------------

def test_stopping_rule_stops_at_the_target_and_records_the_fit():
    rule = StoppingRule(target=0.9)
    assert rule.update(1, 10, 0.5) is None
    assert rule.update(2, 20, 0.95) == "target"
    assert (rule.fit_epoch, rule.fit_step) == (2, 20)
    assert rule.reached == {0.9: (2, 20)}


def test_stopping_rule_without_stop_at_target_records_the_first_fit_only_and_goes_on():
    rule = StoppingRule(target=0.9, stop_at_target=False)
    assert [rule.update(e, 10 * e, acc) for e, acc in enumerate([0.95, 0.8, 0.97], start=1)] == [None] * 3
    assert (rule.fit_epoch, rule.fit_step) == (1, 10)


def test_stopping_rule_stalls_after_patience_epochs_without_improvement():
    rule = StoppingRule(target=1.0, patience=2)
    # 0.60005 is not an improvement over 0.6 (the margin is 1e-4)
    assert [rule.update(e, e, acc) for e, acc in enumerate([0.5, 0.6, 0.60005, 0.55], start=1)] == [None, None, None, "stall"]
    assert (rule.best_acc, rule.best_epoch) == (0.6, 2)
    assert rule.fit_epoch is None


def test_stopping_rule_improvement_resets_the_stall_count_and_no_patience_never_stalls():
    rule = StoppingRule(target=1.0, patience=2)
    assert [rule.update(e, e, acc) for e, acc in enumerate([0.5, 0.5, 0.6, 0.6, 0.6], start=1)] == [None] * 4 + ["stall"]
    patient = StoppingRule(target=1.0)
    assert all(patient.update(e, e, 0.5) is None for e in range(1, 100))


def test_stopping_rule_records_each_threshold_once_at_its_first_crossing():
    rule = StoppingRule(target=0.9995, thresholds=(0.99, 0.999))
    rule.update(1, 5, 0.995)
    rule.update(2, 10, 0.991)
    rule.update(3, 15, 0.9992)
    rule.update(4, 20, 0.993)
    assert rule.reached == {0.99: (1, 5), 0.999: (3, 15)}
    assert rule.update(5, 25, 1.0) == "target"
    assert rule.reached == {0.99: (1, 5), 0.999: (3, 15), 0.9995: (5, 25)}


# --- runtime -------------------------------------------------------------------------------

def test_resolve_runtime_on_cpu_conv_net_vs_mlp():
    s = TrainSettings(device="cpu")
    conv = resolve_runtime(s, SmallAlexNet((3, 28, 28), 10))
    mlp = resolve_runtime(s, MLP((3, 28, 28), 10, [64]))
    assert conv == Runtime(torch.device("cpu"), amp=False, channels_last=True, eval_batch_size=128, cudnn_benchmark=False)
    assert mlp == Runtime(torch.device("cpu"), amp=False, channels_last=False, eval_batch_size=1024, cudnn_benchmark=False)
    assert conv.memory_format == torch.channels_last and mlp.memory_format == torch.contiguous_format
    assert isinstance(conv.autocast(), contextlib.nullcontext)


def test_resolve_runtime_explicit_settings_override_auto():
    s = TrainSettings(device="cpu", channels_last=False, eval_batch_size=64, amp=True)
    rt = resolve_runtime(s, SmallAlexNet((3, 28, 28), 10))
    assert (rt.channels_last, rt.eval_batch_size, rt.amp) == (False, 64, True)
    with warnings.catch_warnings():  # CUDA autocast requested on a machine that may have no CUDA
        warnings.simplefilter("ignore")
        assert isinstance(rt.autocast(), torch.autocast)


def test_runtime_is_frozen():
    rt = resolve_runtime(TrainSettings(device="cpu"), MLP((3, 28, 28), 10, [8]))
    with pytest.raises(AttributeError):
        rt.eval_batch_size = 7


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend `count` CUDA devices exist (only the availability queries; nothing runs on them)."""
    def install(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    return install


def test_resolve_device_spreads_jobs_over_gpus(fake_gpus):
    fake_gpus(3)
    assert [str(resolve_device("auto", k)) for k in range(5)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    fake_gpus(1)
    assert str(resolve_device("auto", 4)) == "cuda"
    assert str(resolve_device("cpu", 4)) == "cpu"


def test_resolve_runtime_auto_on_cuda(fake_gpus):
    fake_gpus(2)
    rt = resolve_runtime(TrainSettings(), SmallAlexNet((3, 28, 28), 10), job_num=3)
    assert rt == Runtime(torch.device("cuda:1"), amp=True, channels_last=True, eval_batch_size=1024, cudnn_benchmark=True)


def test_resolve_device_on_cpu_only_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", 3) == torch.device("cpu")


# --- fit() with and without an explicit runtime ------------------------------------------

@pytest.mark.parametrize("model_fn", [lambda: MLP((3, 28, 28), 10, [32]), lambda: SmallAlexNet((3, 28, 28), 10)],
                         ids=["mlp", "alexnet"])
def test_train_with_an_explicit_runtime_equals_train_without(model_fn):
    data = small_problem(96, 32)
    s = TrainSettings(lr=0.01, batch_size=32, max_epochs=2, stop_at_target=False, device="cpu", crop_size=28)
    runs = []
    for runtime in (None, "resolved"):
        torch.manual_seed(0)
        model = model_fn()
        rt = resolve_runtime(s, model) if runtime else None
        res = fit(model, data, s, runtime=rt)
        runs.append((without_times(res.history), [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_train_uses_the_runtime_it_is_given_not_the_settings():
    data = small_problem(32, 16)
    s = TrainSettings(max_epochs=1, device="cpu", crop_size=28, channels_last=False)
    model = SmallAlexNet((3, 28, 28), 10)
    rt = Runtime(torch.device("cpu"), amp=False, channels_last=True, eval_batch_size=33, cudnn_benchmark=False)
    fit(model, data, s, runtime=rt)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    model = SmallAlexNet((3, 28, 28), 10)
    fit(model, data, s)  # without a runtime: resolved from the settings (contiguous)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()


# --- epoch statistics ----------------------------------------------------------------------

def test_epoch_statistics_keys_and_subset_accuracies():
    y = torch.tensor([0, 1, 2, 3])
    d = DeviceData(train_raw=torch.empty(0), train_ready=torch.empty(0), train_y=y,
                   true_y=torch.tensor([5, 1, 2, 3]), changed=torch.tensor([True, True, False, False]),
                   test_ready=torch.empty(0), test_y=torch.tensor([1, 1]))
    stats = epoch_statistics(3, 30, 0.01, 1.5, 0.25, (torch.tensor([0, 5, 2, 0]), torch.tensor(8.0)),
                             (torch.tensor([1, 0]), torch.tensor(3.0)), d, t0=0.0)
    assert list(stats) == ["epoch", "step", "lr", "train/loss", "train/running_acc", "train/acc", "train/eval_loss",
                           "test/loss", "test/acc", "epoch_time", "generalization_gap", "train/acc_corrupted",
                           "train/acc_corrupted_true_label", "train/acc_clean"]
    assert {k: v for k, v in stats.items() if k != "epoch_time"} == {
        "epoch": 3, "step": 30, "lr": 0.01, "train/loss": 1.5, "train/running_acc": 0.25,
        "train/acc": 0.5, "train/eval_loss": 2.0, "test/loss": 1.5, "test/acc": 0.5, "generalization_gap": 0.0,
        "train/acc_corrupted": 0.5,  # predictions 0, 5 for labels 0, 1
        "train/acc_corrupted_true_label": 0.0,  # ... for true labels 5, 1
        "train/acc_clean": 0.5,  # predictions 2, 0 for labels 2, 3
    }
    clean = DeviceData(**(vars(d) | {"changed": torch.zeros(4, dtype=torch.bool)}))
    stats = epoch_statistics(3, 30, 0.01, 1.5, 0.25, (torch.tensor([0, 5, 2, 0]), torch.tensor(8.0)),
                             (torch.tensor([1, 0]), torch.tensor(3.0)), clean, t0=0.0)
    assert not any(k.startswith(("train/acc_corrupted", "train/acc_clean")) for k in stats)


# --- checkpoint state ----------------------------------------------------------------------

@pytest.mark.parametrize("kind, settings, stop", [
    # the stall after the resume depends on best_acc/best_epoch surviving the checkpoint
    # (restarting them from scratch would stall at epoch 7 instead of 4)
    ("random_pixels", dict(lr=0.5, batch_size=50, patience=2, max_epochs=30), ("stall", 4)),
    # the fit (epoch 1) and the thresholds reached before the checkpoint must not be recorded again
    ("labels", dict(lr=0.05, target_train_acc=0.3, stop_at_target=False, max_epochs=6), ("max_epochs", 6)),
], ids=["stall", "thresholds"])
def test_resume_from_a_checkpoint_file_continues_the_uninterrupted_run(tmp_path, kind, settings, stop):
    data = Corruption(kind=kind, level=1.0 if kind == "random_pixels" else 0.0, seed=0).apply(tiny_problem())
    s = TrainSettings(checkpoint_every=2, device="cpu", crop_size=28, **settings)
    files = []

    def keep(state: dict) -> None:
        save_checkpoint(path := tmp_path / f"{state['epoch']}.pt", state)
        files.append(path)

    torch.manual_seed(0)
    full = fit(MLP((3, 28, 28), 10, [32]), data, s, on_checkpoint=keep)
    assert (full.stop_reason, full.epochs) == stop
    if kind == "labels":
        assert full.fit_epoch == 1 and full.reached[0.3] == (1, 3)
    state = load_checkpoint(files[0])
    assert state["epoch"] == 2
    assert {"epoch", "step", "best_acc", "best_epoch", "train_time", "model", "optimizer", "gen_state", "device_type",
            "cpu_rng_state", "cuda_rng_state", "result"} == set(state)
    torch.manual_seed(123)  # the resumed run takes its initial weights from the checkpoint
    resumed = fit(MLP((3, 28, 28), 10, [32]), data, s, resume=state)
    assert without_times(resumed.history) == without_times(full.history)
    assert (resumed.stop_reason, resumed.epochs, resumed.steps) == (full.stop_reason, full.epochs, full.steps)
    assert (resumed.fit_epoch, resumed.fit_step, resumed.reached) == (full.fit_epoch, full.fit_step, full.reached)


def test_duration_reads_short():
    from rethink.jobs.epoch_table import duration

    assert [duration(s) for s in (0.4, 59, 65, 3725)] == ["0s", "59s", "1m05s", "1h02m"]


# --- a stop signal whose exception Python dropped ------------------------------------------

class _Finalized:
    """An object whose finalizer runs the SIGTERM handler: like SQLAlchemy's weakref callback that a job's
    SIGTERM landed in on CI, where Python prints the exception ("Exception ignored in") and drops it."""

    def __del__(self) -> None:
        import signal

        from rethink import __main__ as entry

        entry.on_sigterm(signal.SIGTERM, None)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception, as expected
@pytest.mark.parametrize("loop", ["train", "train_pack"])
def test_a_sigterm_dropped_in_a_finalizer_still_stops_training(monkeypatch, loop):
    """The job does not train on (it did for 15 s on CI, until the launcher watch's os._exit left its run RUNNING):
    the in-memory and packed loops call `check_stop` every step."""
    from rethink import errors
    from rethink.training.packed_loop import Member, train_pack

    monkeypatch.setattr(errors, "_received", [])
    obj = _Finalized()
    del obj  # the handler ran and raised; Python dropped the exception
    assert errors._received == ["SIGTERM"]
    s = TrainSettings(lr=0.01, batch_size=32, max_epochs=50, stop_at_target=False, device="cpu", crop_size=28)
    model, ended = MLP((3, 28, 28), 10, [32]), []
    with pytest.raises(errors.Terminated, match="received signal SIGTERM"):
        if loop == "train":
            fit(model, small_problem(96, 32), s)
        else:
            train_pack([Member(model, small_problem(96, 32), s, done=ended.append)])
    assert loop == "train" or isinstance(ended[0], errors.Terminated)
