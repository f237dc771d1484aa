"""What a job IS, wired from the layers below: `training` (the training job: data -> corrupt -> model -> fit ->
record), `outcome` (its summary metrics and result table), `epoch_table` (the per-epoch console table),
`importer` (records made outside Hydra, as runs). Each runs through `rethink.run.runner`."""
