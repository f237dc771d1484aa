"""rethink: the randomization tests of Zhang et al. (ICLR 2017) as Hydra sweeps tracked in MLflow."""

__version__ = "0.1.0"
