"""A malformed or read-only SQLite store stops a run with one line, before anything touches it."""

import os
import random
import sqlite3
import subprocess
import sys

import pytest
from conftest import cli_env

from rethink.errors import RethinkError
from rethink.run import stores, track

TINY = ["dataset.train_size=200", "dataset.test_size=100", "trainer.max_epochs=1"]


def damaged_database() -> bytes:
    """A real SQLite file whose fourth page was overwritten (its header is intact)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        con = sqlite3.connect(f"{d}/x.db")
        con.execute("create table t (x text)")
        con.executemany("insert into t values (?)", [("x" * 100,)] * 2000)
        con.commit()
        con.close()
        data = bytearray(open(f"{d}/x.db", "rb").read())
    data[3 * 4096:4 * 4096] = random.Random(2).randbytes(4096)
    return bytes(data)


@pytest.mark.parametrize("content, message", [
    (b"just some text\n", "is not an SQLite database"),
    (random.Random(0).randbytes(8192), "is not an SQLite database"),
    (b"SQLite format 3\x00" + random.Random(1).randbytes(8192), "is corrupt \\(PRAGMA quick_check"),
    (damaged_database(), "is corrupt \\(PRAGMA quick_check: Page 4"),
], ids=["text", "random", "header-and-random", "damaged-page"])
def test_a_malformed_store_is_refused_and_left_untouched(tmp_path, content, message):
    db = tmp_path / "mlflow.db"
    db.write_bytes(content)
    with pytest.raises(RethinkError, match=message) as e:
        track.ensure_experiment(f"sqlite:///{db}", "rethink")
    assert str(db) in str(e.value) and "\n" not in str(e.value)
    assert db.read_bytes() == content


def test_a_sound_new_or_empty_store_passes(tmp_path):
    stores.check(f"sqlite:///{tmp_path}/new/mlflow.db")  # missing: MLflow creates it
    (tmp_path / "empty.db").write_bytes(b"")
    stores.check(f"sqlite:///{tmp_path}/empty.db")
    sqlite3.connect(tmp_path / "real.db").execute("create table t (x)").connection.commit()
    stores.check(f"sqlite:///{tmp_path}/real.db")
    stores.check("http://127.0.0.1:1")  # not a file: nothing to check here


@pytest.mark.parametrize("readonly", ["file", "folder", "parent of a new store"])
def test_a_read_only_store_is_refused_in_one_line(tmp_path, monkeypatch, readonly):
    """Root writes through chmod, so the read-only condition is made by mocking os.access."""
    db = tmp_path / "mlruns" / "mlflow.db"
    if readonly != "parent of a new store":
        track.ensure_experiment(f"sqlite:///{db}", "rethink")
    target = {"file": db, "folder": db.parent, "parent of a new store": tmp_path}[readonly]
    real = os.access
    monkeypatch.setattr(stores.os, "access", lambda p, mode: False if str(p) == str(target) else real(p, mode))
    with pytest.raises(RethinkError) as e:
        stores.check(f"sqlite:///{db}")
    assert str(e.value) == (f"the MLflow store {db} is not writable ({target} is read-only): make it writable, "
                            f"or log elsewhere with mlflow.tracking_uri=")


RUN_WITH_READONLY_STORE = """
import os, runpy, sys
real, store = os.access, os.path.join(os.getcwd(), "mlruns")
os.access = lambda p, mode, *a, **k: False if str(p).startswith(store) and mode & os.W_OK else real(p, mode, *a, **k)
sys.argv = ["rethink", *sys.argv[1:]]
runpy.run_module("rethink", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
@pytest.mark.parametrize("fault", ["malformed", "read-only"])
def test_the_cli_stops_with_one_line_on_a_bad_store(tmp_path, data_root, fault, multirun):
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    if fault == "malformed":
        db.write_text("not a database\n")
        cmd = [sys.executable, "-m", "rethink"]
    else:
        sqlite3.connect(db).execute("create table t (x)").connection.commit()
        (tmp_path / "ro.py").write_text(RUN_WITH_READONLY_STORE)
        cmd = [sys.executable, str(tmp_path / "ro.py")]
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    res = subprocess.run([*cmd, *(["-m"] if multirun else []), *TINY, f"hydra.sweep.dir={tmp_path}/sweep"],
                         cwd=tmp_path, env=cli_env(data_root), capture_output=True, text=True, timeout=300)
    out = (res.stdout + res.stderr).strip()
    assert res.returncode != 0
    want = "is not an SQLite database" if fault == "malformed" else "is not writable"
    assert out.splitlines() == [out] and out.startswith(f"the MLflow store {db} ") and want in out, out
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before


OPEN_TOGETHER = """
import sys, time
from rethink.run import track
uri, role, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # every process opens the new store at the same moment
if role == "sweep":
    print("experiment", track.ensure_experiment(uri, "rethink"))
else:  # a reader: a report, the UI, a test polling a running sweep
    print("read", len(track.client(uri).search_experiments()))
"""


def test_readers_and_sweeps_opening_a_new_store_together_never_race_its_migrations(tmp_path):
    """MLflow creates and migrates a SQLite store in whichever process opens it first; two at once
    fail ("Online migration expected to match one row ..."), so every rethink process does it under one lock."""
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    start = str(__import__("time").time() + 8)  # after every process has imported MLflow
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_TOGETHER, uri, role, start], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for role in ("sweep", "reader", "sweep", "reader")]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert len({out for out, _ in outs if out.startswith("experiment")}) == 1  # one experiment, found by both
