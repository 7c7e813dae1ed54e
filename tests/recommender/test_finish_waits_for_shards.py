"""`finish --wait-for-shards`: the final step of a gang-admitted run starts with the workers and
waits for their shards, instead of failing or being started only after them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "recommender", *args], cwd=cwd, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _finish(cwd: Path, shards: str, wait: str, *extra: str) -> subprocess.Popen[str]:
    return _run("finish", "--orders", "data/orders.csv", "--catalog", "data/catalog.csv", "--out", f"art-{shards}",
                "--shards-dir", shards, "--shards", "2", "--registry", "reg", "--model", "m", "--min-lift", "-1",
                "--wait-for-shards", wait, *extra, cwd=cwd)  # fmt: skip


def test_finish_started_before_the_workers_waits_and_publishes(tmp_path: Path) -> None:
    made = _run("generate", "--out", "data", "--customers", "300", "--books", "80", "--orders", "3000", cwd=tmp_path)
    assert made.wait(timeout=120) == 0
    finish = _finish(tmp_path, "run/shards", "120", "--cleanup-dir", "run")  # before any shard exists
    # Its first line says it is waiting for both: only then start the workers (started at once,
    # a fast worker could write its shard before finish looks for the first time).
    assert finish.stderr is not None
    first = finish.stderr.readline()
    assert "waiting for 2 of 2 shards" in first, first
    for index in ("0", "1"):
        worker = _run("train", "--orders", "data/orders.csv", "--catalog", "data/catalog.csv", "--shards-dir",
                      "run/shards", "--shards", "2", "--threads", "1", "--quiet", cwd=tmp_path,
                      env={"JOB_COMPLETION_INDEX": index})  # fmt: skip
        assert worker.wait(timeout=120) == 0
    out, err = finish.communicate(timeout=180)
    assert finish.returncode == 0, err
    assert '"created": true' in out
    assert not (tmp_path / "run").exists()  # the run's scratch goes once its model is promoted


def test_finish_names_the_missing_shards_when_the_wait_runs_out(tmp_path: Path) -> None:
    made = _run("generate", "--out", "data", "--customers", "300", "--books", "80", "--orders", "3000", cwd=tmp_path)
    assert made.wait(timeout=120) == 0
    finish = _finish(tmp_path, "empty", "0.5")
    _, err = finish.communicate(timeout=120)
    assert finish.returncode == 2  # bad input: nothing to merge
    assert "shards [0, 1] of 2 are still missing" in err and "Traceback" not in err
    assert not list((tmp_path / "reg").glob("*/versions/*"))  # nothing published
    negative = _finish(tmp_path, "empty", "-1")
    _, err = negative.communicate(timeout=60)
    assert negative.returncode == 2 and "must be 0 or more seconds" in err
    # Only a run's own scratch is removed: never a directory that does not hold its shards.
    (tmp_path / "keep").mkdir()
    elsewhere = _finish(tmp_path, "empty", "0", "--cleanup-dir", "keep")
    _, err = elsewhere.communicate(timeout=60)
    assert elsewhere.returncode == 2 and "must contain --shards-dir" in err and (tmp_path / "keep").is_dir()
