"""Entry point: `python -m rethink [-m] [overrides]`.

Hydra refuses a number for a config group (`corruption=0.5`), so before Hydra parses the command
line, `corruption=<number>[,<number>...]` becomes `corruption=labels corruption.level=<numbers>`:
label corruption at level p, as the paper's Figure 1 sweeps it.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from rethink.errors import Terminated, stop_requested

NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
CORRUPTION_LEVELS = re.compile(rf"^corruption=({NUMBER}(,{NUMBER})*)$")


def normalize_argv(argv: list[str]) -> list[str]:
    """Rewrite `corruption=<numbers>` into the label-corruption level; leave everything else."""
    out = []
    for arg in argv:
        m = CORRUPTION_LEVELS.match(arg)
        out += ["corruption=labels", f"corruption.level={m.group(1)}"] if m else [arg]
    return out


def on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM raises in the main thread, so the open run ends KILLED and the sweep closes (recorded first, so a
    loop can raise it again if it was lost: `errors.check_stop`)."""
    name = signal.Signals(signum).name
    stop_requested(name)
    raise Terminated(f"received signal {name}")


def on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C: Python's KeyboardInterrupt, recorded like SIGTERM."""
    stop_requested("SIGINT")
    raise KeyboardInterrupt


def handle_signals() -> None:
    """SIGTERM -> `Terminated` (like Ctrl-C) in this process, both recorded; only the main thread may set handlers.
    A SIGINT that is ignored (a shell's background job) stays ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, on_sigint)


def watch_launcher() -> None:
    """In a job worker (joblib, submitit, Ray) on the launcher's host: when the process that launched
    the sweep dies, end this job (SIGTERM to itself, so its run ends KILLED), then this process."""
    from rethink.sweep.callbacks import LAUNCHER_ENV
    from rethink.system.processes import process_alive, process_id

    launcher = os.environ.get(LAUNCHER_ENV, "")
    if not launcher or launcher.split(":")[:2] == process_id().split(":")[:2] or process_alive(launcher) is not True:
        return  # not a worker, or another host (a cluster scheduler owns those)

    def watch() -> None:
        while process_alive(launcher):
            time.sleep(2)
        logging.getLogger("rethink").error("the sweep's launching process is gone: ending this job")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(15)  # time for its run to end KILLED; then the worker, idle under a dead launcher, goes too
        os._exit(1)

    if not getattr(watch_launcher, "started", False):
        watch_launcher.started = True
        threading.Thread(target=watch, daemon=True, name="rethink-launcher-watch").start()


# An absolute path: `python -m rethink` and the installed `rethink` console script (whose calling
# module is not `__main__`, which makes Hydra look for a `rethink.conf` Python package) find the same configs.
CONF = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def app(cfg: DictConfig) -> dict[str, float]:
    """One Hydra job: training (task=train, the default) or a theory task (rethink.theory.jobs)."""
    from rethink.run import redact

    redact.install()  # again here: a launcher's worker process does not run main()
    handle_signals()
    watch_launcher()
    # imported here so `--help` and `--cfg` stay fast
    if OmegaConf.select(cfg, "task.name", default="train") == "train":
        from rethink.jobs.training import run
    else:
        from rethink.theory.jobs import run

    try:
        return run(cfg)
    except Exception as e:  # say so now: in a sweep, Hydra reports a failed job only at the very end
        logging.getLogger("rethink").error("job failed: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise


def main() -> None:
    """Console entry (`rethink ...` or `python -m rethink ...`): one line, not a traceback, when
    interrupted (Ctrl-C, SIGTERM)."""
    from rethink.run import redact

    redact.install()  # before Hydra logs the overrides: credentials in mlflow.tracking_uri become ***
    sys.argv = sys.argv[:1] + normalize_argv(sys.argv[1:])
    handle_signals()
    code: int | str | None = 0
    try:
        app()
    except KeyboardInterrupt as e:
        how = str(e) or "interrupted (Ctrl-C)"
        print(f"rethink: {how}: open runs were ended KILLED and keep their checkpoints; run the same command "
              "again to resume", file=sys.stderr)
        code = 143 if isinstance(e, Terminated) else 130
    except SystemExit as e:  # Hydra's exit after an error it reported, or --help
        code = e.code
    except BrokenPipeError:  # `rethink --help | head`: the reader has gone; nothing is left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # as a process ended by SIGPIPE
    exit_now(code)


def exit_now(code: int | str | None) -> None:
    """End the process as `sys.exit(code)` would, without tearing down the interpreter when nothing is left running:
    every `atexit` handler runs (MLflow's, logging's), the streams are flushed, then `os._exit`. Tearing down the
    modules of torch, MLflow and SQLAlchemy one by one took ~2 s of a one-epoch job here (bench/startup.py), and a
    process about to end has no use for it. With other threads still alive (a joblib launcher's executor) it exits
    the ordinary way, which shuts them down in their order."""
    import atexit

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        sys.exit(code)
    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
