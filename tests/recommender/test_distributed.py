"""The distributed run as the platform drives it: generate, N workers, finish.

Workers are real processes where it matters (the index from $JOB_COMPLETION_INDEX, SIGKILL);
bad inputs fail with one line naming the cause and exit 2.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recommender.cli import main
from recommender.contract import ENV_SHARD_INDEX, EXIT_BAD_INPUT
from recommender.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
SPEC = ["--seed", "42", "--customers", "1500", "--books", "400", "--orders", "15000"]


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _ok(*argv: str) -> dict[str, object]:
    code, out, err = _run(*argv)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def _data(d: Path) -> list[str]:
    return ["--orders", str(d / "orders.csv"), "--catalog", str(d / "catalog.csv")]


def _worker(data: Path, shards: Path, index: int, count: int, stderr: int | None = None) -> subprocess.Popen[bytes]:
    """A worker pod: `train --shards N`, its index from the environment, one thread."""
    env = {**os.environ, ENV_SHARD_INDEX: str(index), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "recommender", "train", *_data(data), "--shards-dir", str(shards),
            "--shards", str(count), "--threads", "1"]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=stderr if stderr is not None else
                            subprocess.PIPE)  # fmt: skip


@contextlib.contextmanager
def _full_pipe() -> Iterator[int]:
    """A pipe with no room left: a process writing to it blocks at its first line.

    A worker prints nothing until its first fit is done, so a worker given this as stderr is
    stopped mid-run, after reading the data and computing, before writing its shard:
    deterministic, where timing a kill against a fast worker would not be.
    """
    r, w = os.pipe()
    os.set_blocking(w, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(w, b"x" * 512)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(w, b"x")
    os.set_blocking(w, True)
    try:
        yield w
    finally:
        os.close(w)
        os.close(r)


def test_killed_worker_resumes_and_merges_to_single_process(small_data: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    with _full_pipe() as stuck:
        workers = [_worker(small_data, shards, i, 3, stuck if i == 1 else None) for i in range(3)]
        for i in (0, 2):
            _, err = workers[i].communicate(timeout=120)
            assert workers[i].returncode == 0, err.decode()
        assert workers[1].poll() is None  # cannot finish: blocked on its first progress line
        workers[1].send_signal(signal.SIGKILL)
        workers[1].wait(timeout=30)
    assert workers[1].returncode == -signal.SIGKILL
    written = sorted(p.name[:18] for p in shards.iterdir())
    assert written == ["shard-0000-of-0003", "shard-0002-of-0003"]  # nothing of the killed one counts

    # The JobSet restarts the whole set: only the missing shard is computed again.
    rerun = []
    for i in range(3):
        with pytest.MonkeyPatch.context() as env:
            env.setenv(ENV_SHARD_INDEX, str(i))
            rerun.append(_ok("train", *_data(small_data), "--shards-dir", str(shards), "--shards", "3", "--quiet"))
    assert [r["computed"] for r in rerun] == [False, True, False]

    _ok("train", *_data(small_data), "--out", str(tmp_path / "single"), "--quiet")
    _ok("merge", *_data(small_data), "--shards-dir", str(shards), "--shards", "3", "--out", str(tmp_path / "m"),
        "--quiet")  # fmt: skip
    assert (tmp_path / "m" / "model.npz").read_bytes() == (tmp_path / "single" / "model.npz").read_bytes()


def test_distributed_run_promotes_what_the_pipeline_promotes(tmp_path: Path) -> None:
    """generate once; 2 workers; finish: the same version id as the one-process pipeline."""
    reg = ["--registry", str(tmp_path / "models"), "--model", "bookstore"]
    single = _ok("pipeline", "--workdir", str(tmp_path / "one"), *reg, *SPEC, "--min-lift", "0.1", "--quiet")
    data, shards = tmp_path / "work" / "data", tmp_path / "work" / "shards"
    _ok("generate", "--out", str(data), *SPEC)
    for i in range(2):
        assert _ok("train", *_data(data), "--shards-dir", str(shards), "--shard", f"{i}/2", "--seed", "42",
                   "--quiet")["computed"]  # fmt: skip
    finish = ["finish", *_data(data), "--shards-dir", str(shards), "--shards", "2", "--out", str(tmp_path / "art"),
              *reg, "--seed", "42", "--min-lift", "0.1", "--quiet"]  # fmt: skip
    result = _ok(*finish)
    assert result["version"] == single["version"]
    assert result["created"] is False and result["promoted"] is False  # already there: same content
    assert _ok(*finish) == result  # a retried final pod changes nothing


def test_selection_is_recorded_in_lineage(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    result = _ok("pipeline", "--workdir", str(tmp_path / "w"), "--registry", str(reg.root), "--model", "m", *SPEC,
                 "--k-grid", "5,20", "--candidates", "cosine,bm25,tfidf", "--quiet")  # fmt: skip
    lineage = reg.lineage("m", str(result["version"]))
    selection = lineage["selection"]
    got = {(c["similarity"], c["k"]): c for c in selection["candidates"]}
    assert set(got) == {(s, k) for s in ("cosine", "bm25", "tfidf") for k in (5, 20)}
    assert all({"ndcg@10", "hr@10"} <= set(c) for c in got.values())
    best = max(got.values(), key=lambda c: c["ndcg@10"])
    assert selection["winner"] == {"similarity": best["similarity"], "k": best["k"]}
    assert lineage["params"]["similarity"] == best["similarity"] and lineage["params"]["K"] == best["k"]
    assert selection["default"] == {"similarity": "cosine", "k": 20}
    assert lineage["metrics"]["lift_ndcg"] > 0.1  # the gate ran on the winner


def test_no_select_trains_only_the_default(tmp_path: Path) -> None:
    result = _ok("pipeline", "--workdir", str(tmp_path / "w"), "--registry", str(tmp_path / "r"), "--model", "m",
                 *SPEC, "--similarity", "tfidf", "--k", "12", "--no-select", "--quiet")  # fmt: skip
    assert result["selection"] is None
    lineage = Registry(tmp_path / "r").lineage("m", str(result["version"]))
    assert lineage["params"]["similarity"] == "tfidf" and lineage["params"]["K"] == 12
    assert lineage["selection"] is None


@pytest.fixture(scope="module")
def three_shards(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    shards = tmp_path_factory.mktemp("three") / "shards"
    for i in range(3):
        _ok("train", *_data(small_data), "--shards-dir", str(shards), "--shard", f"{i}/3", "--no-select", "--quiet")
    return shards


def _merge_error(small_data: Path, shards: Path, tmp_path: Path, *extra: str, data: Path | None = None) -> str:
    code, out, err = _run("merge", *_data(data or small_data), "--shards-dir", str(shards), "--out",
                          str(tmp_path / "a"), "--quiet", *extra)  # fmt: skip
    assert code == EXIT_BAD_INPUT, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "a").exists()  # nothing half-merged is left behind
    return err


def _copy(shards: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    dest.mkdir()
    for p in shards.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


def test_merge_names_a_missing_shard(small_data: Path, three_shards: Path, tmp_path: Path) -> None:
    shards = _copy(three_shards, tmp_path)
    next(shards.glob("shard-0001-of-0003-*")).unlink()
    err = _merge_error(small_data, shards, tmp_path, "--shards", "3", "--no-select")
    assert "1 of 3 shards missing" in err and ": 1/3" in err and "train --shard I/3" in err


def test_merge_with_the_wrong_count_says_which_count_exists(small_data: Path, three_shards: Path,
                                                            tmp_path: Path) -> None:  # fmt: skip
    err = _merge_error(small_data, three_shards, tmp_path, "--shards", "2", "--no-select")
    assert "2 of 2 shards missing" in err and "--shards 3" in err


def test_merge_with_other_parameters_names_them(small_data: Path, three_shards: Path, tmp_path: Path) -> None:
    err = _merge_error(small_data, three_shards, tmp_path, "--shards", "3")  # workers ran with --no-select
    assert "other parameters" in err or "computed with" in err
    assert "kmax 20 instead of 40" in err


def test_merge_refuses_a_shard_of_other_data(small_data: Path, three_shards: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    _ok("generate", "--out", str(other), "--seed", "8", "--customers", "1500", "--books", "400", "--orders", "15000")
    err = _merge_error(small_data, three_shards, tmp_path, "--shards", "3", "--no-select", data=other)
    assert "3 of 3 shards missing" in err  # another data set's shards have other names
    # A shard of other data under this data's name (copied by hand): named as such.
    theirs = tmp_path / "theirs"
    for i in range(3):
        _ok("train", *_data(other), "--shards-dir", str(theirs), "--shard", f"{i}/3", "--no-select", "--quiet")
    mixed = _copy(three_shards, tmp_path)
    ours = next(mixed.glob("shard-0002-of-0003-*"))
    ours.write_bytes(next(theirs.glob("shard-0002-of-0003-*")).read_bytes())
    err = _merge_error(small_data, mixed, tmp_path, "--shards", "3", "--no-select")
    assert ours.name in err and "other data" in err


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_merge_refuses_a_corrupt_shard(small_data: Path, three_shards: Path, tmp_path: Path, damage: str) -> None:
    shards = _copy(three_shards, tmp_path)
    victim = next(shards.glob("shard-0001-of-0003-*"))
    raw = bytearray(victim.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        mid = len(raw) // 2
        raw[mid : mid + 8] = bytes(b ^ 0xFF for b in raw[mid : mid + 8])
    else:
        raw = bytearray(b"not a zip file at all")
    victim.write_bytes(bytes(raw))
    err = _merge_error(small_data, shards, tmp_path, "--shards", "3", "--no-select")
    assert victim.name in err and "corrupt" in err and "rerun its worker" in err


def _train_error(small_data: Path, tmp_path: Path, *argv: str) -> str:
    code, _, err = _run("train", *_data(small_data), *argv)
    assert code == EXIT_BAD_INPUT
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_worker_index_comes_from_the_flag_or_the_environment(small_data: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    shards = str(tmp_path / "s")
    monkeypatch.delenv(ENV_SHARD_INDEX, raising=False)
    err = _train_error(small_data, tmp_path, "--shards-dir", shards, "--shards", "3")
    assert ENV_SHARD_INDEX in err and "--shard I/3" in err
    err = _train_error(small_data, tmp_path, "--shards-dir", shards)
    assert "--shard I/N" in err and "--shards N" in err and ENV_SHARD_INDEX in err
    monkeypatch.setenv(ENV_SHARD_INDEX, "3")
    err = _train_error(small_data, tmp_path, "--shards-dir", shards, "--shards", "3")
    assert f"${ENV_SHARD_INDEX}='3'" in err and "0..2" in err
    monkeypatch.setenv(ENV_SHARD_INDEX, "2")
    assert _ok("train", *_data(small_data), "--shards-dir", shards, "--shards", "3", "--quiet")["shard"] == "2/3"
    # An explicit --shard wins over the environment, and must agree with --shards.
    assert _ok("train", *_data(small_data), "--shards-dir", shards, "--shard", "0/3", "--quiet")["shard"] == "0/3"
    err = _train_error(small_data, tmp_path, "--shards-dir", shards, "--shard", "0/3", "--shards", "4")
    assert "disagree" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "--out DIR"),
        (["--out", "a", "--shards-dir", "s", "--shard", "0/2"], "exclude each other"),
        (["--out", "a", "--shard", "0/2"], "--shard apply to sharded training only"),
        (["--out", "a", "--k-grid", "5"], "--k-grid apply to sharded training only"),
        (["--shards-dir", "s", "--shard", "0/2", "--no-select", "--k-grid", "5"], "--no-select"),
    ],
)
def test_train_flag_combinations(small_data: Path, tmp_path: Path, argv: list[str], needle: str) -> None:
    argv = [str(tmp_path / a) if a in ("a", "s") else a for a in argv]
    assert needle in _train_error(small_data, tmp_path, *argv)


@pytest.mark.parametrize("bad", ["2/2", "-1/3", "1", "a/b", "0/0"])
def test_bad_shard_spec_is_rejected_by_argparse(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--orders", "o", "--shards-dir", "s", "--shard", bad])
    assert exc.value.code == EXIT_BAD_INPUT
    assert "--shard" in capsys.readouterr().err


def test_finish_fails_the_gate_without_registering(small_data: Path, three_shards: Path, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    code, _, err = _run("finish", *_data(small_data), "--shards-dir", str(three_shards), "--shards", "3",
                        "--out", str(tmp_path / "a"), "--registry", str(reg), "--model", "m", "--no-select",
                        "--min-lift", "100", "--quiet")  # fmt: skip
    assert code == 3 and "--min-lift" in err
    assert Registry(reg).versions("m") == []
    # The artifact holds the evaluation for whoever looks into why.
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert np.isfinite(meta["metrics"]["lift_ndcg"])
