"""The importer's notion of the standard budget is the one the configs give a preset at `scale=paper` (each
model's `paper.max_epochs`, the whole budget trained), read from conf/, never a copy of it."""

import json
from pathlib import Path

import pytest
from conftest import composed

from rethink.jobs import importer
from rethink.run import track

RECORDS = Path(__file__).resolve().parents[1] / "docs/results/gpu-h200/paper_runs"


def standard_record(model: str) -> dict:
    """An imported record of `model` made with exactly the budget a preset gives it at scale=paper."""
    rec = json.loads((RECORDS / "mlp_1x512-labels0-none-s0.json").read_text())
    rec["model"] = model
    rec["settings"] |= importer.paper_budget(model)
    return rec


@pytest.mark.parametrize("model", ["mlp_1x512", "alexnet", "inception"])
def test_the_paper_budget_is_read_from_the_configs(model):
    cfg = composed(f"model={model}", "scale=paper", "experiment=table1")
    budget = importer.paper_budget(model)
    assert budget["max_epochs"] == cfg.model.paper.max_epochs and budget["stop_at_target"] is False
    assert budget["lr"] == cfg.model.lr and budget["lr_decay_period"] is None and budget["target_train_acc"] == 0.999


def test_only_a_record_with_its_models_paper_budget_is_standard():
    for model in ("mlp_1x512", "inception"):
        assert importer.budget_tags(standard_record(model), "paper") == {"budget": "standard"}
    # The old protocol (the gpu-h200 import): 200 epochs, stopped at the target, a 25-epoch patience.
    old = json.loads((RECORDS / "mlp_1x512-labels0-none-s0.json").read_text())
    tags = importer.budget_tags(old, "paper")
    assert tags["budget"] == "custom"
    assert tags["budget_overrides"].split() == ["trainer.max_epochs=200", "trainer.patience=25", "trainer.stop_at_target=True"]
    # One model's budget is not another's: MLP's 120 epochs are not Inception's 80.
    mixed = standard_record("mlp_1x512") | {"model": "inception"}
    assert importer.budget_tags(mixed, "paper")["budget_overrides"].startswith("trainer.max_epochs=120")
    assert importer.budget_tags(standard_record("alexnet"), "custom")["budget"] == "custom"  # not full data


def test_a_standard_record_imports_as_a_standard_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    importer.import_record(uri, "rethink", standard_record("mlp_1x512"), "test")
    run = track.runs_frame(uri, "rethink").iloc[0]
    assert run["tags.budget"] == "standard" and run["tags.scale"] == "paper"
