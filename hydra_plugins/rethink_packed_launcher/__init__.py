"""rethink's packed launcher for Hydra (`hydra/launcher=packed`); Hydra finds plugins in `hydra_plugins.*`."""
