"""Checkpoint integrity: checksum on write, verification on load, unusable files moved aside, the
interrupted run KILLED with the reason, temporary files of dead writers removed."""

import io
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from rethink.run import checkpoint, lifecycle, track

STATE = {"epoch": 5, "run_id": "r1", "config_hash": "abc", "w": torch.arange(20000, dtype=torch.float32)}


def flip(path, where: float = 0.5) -> None:
    """Invert one byte of a file, `where` of the way in (0.5: inside the tensor data)."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


def dead_owner() -> str:
    """A `process_id()` of a process of this host that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return f"{socket.gethostname()}:{p.pid}:1"


def test_a_checkpoint_round_trips_with_its_checksum_header(tmp_path):
    path = tmp_path / "abc.pt"
    lifecycle.save_checkpoint(path, STATE)
    assert path.read_bytes().startswith(checkpoint.MAGIC)
    state = checkpoint.read(path)
    assert state["epoch"] == 5 and torch.equal(state["w"], STATE["w"])
    assert lifecycle.load_checkpoint(path)["run_id"] == "r1"
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


def test_a_flipped_byte_that_torch_load_accepts_fails_the_checksum(tmp_path):
    path = tmp_path / "abc.pt"
    lifecycle.save_checkpoint(path, STATE)
    flip(path)
    poisoned = torch.load(io.BytesIO(path.read_bytes()[checkpoint.HEADER_LEN:]), weights_only=True)
    assert not torch.equal(poisoned["w"], STATE["w"])  # loads fine, one weight changed: what resumed before
    with pytest.raises(checkpoint.CheckpointError, match="checksum does not match"):
        checkpoint.read(path)
    assert lifecycle.load_checkpoint(path) is None


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:checkpoint.HEADER_LEN - 10]), "no checksum header"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "checksum does not match"),
    (lambda p: torch.save(STATE, p), "no checksum header"),  # written without the header
    (lambda p: p.write_bytes(b""), "no checksum header"),
], ids=["truncated-header", "truncated-payload", "no-header", "empty"])
def test_damaged_checkpoints_are_refused_with_the_reason(tmp_path, damage, message):
    path = tmp_path / "abc.pt"
    lifecycle.save_checkpoint(path, STATE)
    damage(path)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.read(path)


def test_a_sound_checkpoint_loads_only_for_its_own_job_and_run(tmp_path):
    path = tmp_path / "abc.pt"
    assert checkpoint.load_verified(path, "abc", {"r1"}) == (None, None)  # none there
    lifecycle.save_checkpoint(path, STATE)
    state, why = checkpoint.load_verified(path, "abc", {"r1", "r0"})
    assert why is None and state["run_id"] == "r1" and path.is_file()
    for identity, runs, reason in [("xyz", {"r1"}, "belongs to config abc, not xyz"),
                                   ("abc", {"r2"}, "belongs to run r1, not to an interrupted run")]:
        lifecycle.save_checkpoint(path, STATE)
        state, why = checkpoint.load_verified(path, identity, runs)
        assert state is None and reason in why and "moved aside to abc.pt.corrupt" in why
        assert not path.exists() and (tmp_path / "abc.pt.corrupt").is_file()


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    host, old = socket.gethostname(), time.time() - 2 * checkpoint.STALE_TMP_SECONDS
    files = {name: tmp_path / name for name in [
        f".abc.pt.{dead_owner()}.tmp",                    # this host, its writer is gone: removed
        f".abc.pt.{lifecycle.process_id()}.tmp",           # a live writer (this process): kept
        ".abc.pt.other-host:123:456.tmp",                  # another host, recent (maybe writing now): kept
        ".def.pt.other-host:124:456.tmp",                  # another host, hours old: removed
        ".def.pt.4242.tmp",                                # written before the owner had a host: old, removed
        ".unrelated.tmp", "abc.pt"]}                       # not a checkpoint's temporary file: kept
    for f in files.values():
        f.write_bytes(b"x")
    for name in (".def.pt.other-host:124:456.tmp", ".def.pt.4242.tmp"):
        os.utime(files[name], (old, old))
    lifecycle.remove_stale_tmp(tmp_path)
    left = {f.name for f in tmp_path.iterdir()}
    assert left == {f".abc.pt.{lifecycle.process_id()}.tmp", ".abc.pt.other-host:123:456.tmp", ".unrelated.tmp",
                    "abc.pt"}, (host, left)


@pytest.mark.parametrize("status", ["RUNNING", "KILLED"])
def test_an_unusable_checkpoint_is_set_aside_and_its_run_killed_with_the_reason(tmp_path, status):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    c = track.client(uri)
    run_id = c.create_run(exp, tags={"config_hash": "abc", "process": dead_owner()}).info.run_id
    if status == "KILLED":  # as the end of its sweep leaves a job killed -9
        lifecycle.mark_killed(uri, run_id, "the job's process ended without closing its run (killed?)")
    ckpt = tmp_path / "checkpoints" / "abc.pt"
    lifecycle.save_checkpoint(ckpt, STATE | {"run_id": run_id})
    flip(ckpt)
    assert lifecycle.find_resumable(uri, exp, "abc", ckpt) is None  # trains afresh
    run = c.get_run(run_id)
    reason = run.data.tags["failure_reason"]
    assert run.info.status == "KILLED" and "unusable" in reason and "checksum does not match" in reason
    assert "trained again in a new run" in reason
    assert ("interrupted by: the job's process ended" in reason) == (status == "KILLED")
    assert not ckpt.exists() and (ckpt.parent / "abc.pt.corrupt").is_file()
