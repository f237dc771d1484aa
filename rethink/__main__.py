"""Entry point: `python -m rethink [-m] [overrides]`.

Hydra refuses a number for a config group (`corruption=0.5`), so before Hydra parses the command
line, `corruption=<number>[,<number>...]` becomes `corruption=labels corruption.level=<numbers>`:
label corruption at level p, as the paper's Figure 1 sweeps it.
"""

from __future__ import annotations

import re
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
CORRUPTION_LEVELS = re.compile(rf"^corruption=({NUMBER}(,{NUMBER})*)$")


def normalize_argv(argv: list[str]) -> list[str]:
    """Rewrite `corruption=<numbers>` into the label-corruption level; leave everything else."""
    out = []
    for arg in argv:
        m = CORRUPTION_LEVELS.match(arg)
        out += ["corruption=labels", f"corruption.level={m.group(1)}"] if m else [arg]
    return out


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> dict[str, float]:
    """One Hydra job: training (task=train, the default) or a theory task (rethink.theory.jobs)."""
    import logging

    from rethink import redact

    redact.install()  # again here: a launcher's worker process does not run main()

    # imported here so `--help` and `--cfg` stay fast
    if OmegaConf.select(cfg, "task.name", default="train") == "train":
        from rethink.job import run
    else:
        from rethink.theory.jobs import run

    try:
        return run(cfg)
    except Exception as e:  # say so now: in a sweep, Hydra reports a failed job only at the very end
        logging.getLogger("rethink").error("job failed: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise


def main() -> None:
    """Console entry (`rethink ...` or `python -m rethink ...`)."""
    from rethink import redact

    redact.install()  # before Hydra logs the overrides: credentials in mlflow.tracking_uri become ***
    sys.argv = sys.argv[:1] + normalize_argv(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
