"""Ranking quality of every selection candidate (EASE included) against `implicit`'s item-kNN, and
what the selection costs the dev JobSet run (issue 17).

    python benchmarks/bench_quality.py --json /tmp/bench_quality.json
    python benchmarks/bench_quality.py --part jobset --repeats 3 --json /tmp/bench_jobset.json

Part "quality", per data set (standard: 200k customers x 50k books, the benchmarks' data;
platform: the dev training job's data, 20k x 5k; longtail: `generate --shape longtail`, 50k x 7k):
- ours: the real selection (`train_shard` with one shard, then `finish`): every candidate's
  HR@10, NDCG@10 and coverage on the validation split, the winner, and the winner's and the
  default's figures on the test split (the project's time split: each customer's last order;
  validation the one before);
- implicit 0.7.3: CosineRecommender and BM25Recommender (K1=1.2, B=0.75) at K in the same grid,
  fitted on the same training orders and ranked by their own `recommend` (already-bought books
  filtered), scored by the same metric code; the best K on validation is then scored on test.

Part "jobset": the dev JobSet's three steps as its pods run them (the args `distributed_steps`
renders, paths mapped to a temporary directory): prepare (generate), then the 2 workers and
finish together (finish waits for the shards), one thread each. Wall time from prepare's start
to finish's end, on the standard data and on the platform's data, for this code ("after") and
for the commit before issue 17 ("before", its `recommender` package exported with `git archive`),
interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DATASETS: dict[str, dict[str, Any]] = {
    "standard": {"shape": "standard", "customers": 200_000, "books": 50_000, "orders": 5_600_000},
    "platform": {"shape": "standard", "customers": 20_000, "books": 5_000, "orders": 200_000},
    "longtail": {"shape": "longtail", "customers": 50_000, "books": 7_000, "orders": 120_000},
}
K_GRID = (5, 10, 20, 40)
BEFORE_COMMIT = "c96d52d"  # main before issue 17


def _generate(name: str, out: Path) -> None:
    from recommender.datagen import DatasetSpec, generate

    d = DATASETS[name]
    generate(DatasetSpec.shaped(d["shape"], seed=42, customers=d["customers"], books=d["books"],
                                orders=d["orders"]), out)  # fmt: skip


def _implicit(name: str, split: Any, k: int) -> dict[str, float]:
    import numpy as np
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    from recommender.evaluate import _evaluated_users, _metrics

    cls = CosineRecommender if name == "cosine" else BM25Recommender
    model = cls(K=k)  # BM25: K1=1.2, B=0.75, like ours
    train = split.train.astype(np.float32).tocsr()
    model.fit(train, show_progress=False)
    users = _evaluated_users(split)
    ids = np.concatenate([model.recommend(users[i : i + 8192], train[users[i : i + 8192]], N=10)[0]
                          for i in range(0, users.size, 8192)])  # fmt: skip
    return _metrics(ids.astype(np.int64), split.test[users], 10, train.shape[1])


def _quality(name: str, root: Path) -> dict[str, Any]:
    from recommender.datacache import load_interactions
    from recommender.distributed import finish, train_shard
    from recommender.evaluate import split_last, split_validation
    from recommender.selection import DEFAULT_CANDIDATES, DEFAULT_EASE_L2_GRID, Candidate, candidate_grid, plan_for

    data_dir = root / name
    t0 = time.perf_counter()
    _generate(name, data_dir)
    orders, catalog = data_dir / "orders.csv", data_dir / "catalog.csv"
    candidates = candidate_grid(Candidate("cosine", 20), DEFAULT_CANDIDATES, K_GRID, DEFAULT_EASE_L2_GRID)
    t1 = time.perf_counter()
    train_shard(orders, catalog, root / f"{name}-shards", plan_for(candidates, 42), 0, 1, log=None)
    t2 = time.perf_counter()
    ours = finish(orders, catalog, root / f"{name}-shards", 1, root / f"{name}-artifact", registry=root / "models",
                  model=name, alias="production", candidates=candidates, seed=42, log=None)  # fmt: skip
    t3 = time.perf_counter()
    print(f"{name}: generate {t1 - t0:.1f}s, train {t2 - t1:.1f}s, finish {t3 - t2:.1f}s; winner "
          f"{ours['selection']['winner']}", flush=True)  # fmt: skip
    data = load_interactions(orders, catalog)
    validation, test = split_validation(data, 42), split_last(data, 42)
    implicit_rows = []
    for sim in ("cosine", "bm25"):
        for k in K_GRID:
            implicit_rows.append({"similarity": sim, "k": k, **_implicit(sim, validation, k)})
            print(f"  implicit {sim} K={k}: validation ndcg@10 {implicit_rows[-1]['ndcg@10']:.4f}", flush=True)
    best = {}
    for sim in ("cosine", "bm25"):
        row = max((r for r in implicit_rows if r["similarity"] == sim), key=lambda r: r["ndcg@10"])
        best[sim] = {"k": row["k"], "validation": row, "test": _implicit(sim, test, int(row["k"]))}
    return {"dataset": DATASETS[name], "seconds": {"generate": t1 - t0, "train": t2 - t1, "finish": t3 - t2},
            "ours": {"selection": ours["selection"], "winner_test": ours["metrics"]},
            "implicit_validation": implicit_rows, "implicit_best": best,
            "shape": _shape(data)}  # fmt: skip


def _shape(data: Any) -> dict[str, float]:
    import numpy as np

    m = data.matrix()
    buyers = np.sort(np.diff(m.tocsc().indptr))[::-1]
    orders = np.bincount(data.users, minlength=data.n_users)
    return {"orders_per_customer": float(orders.mean()), "buyers_per_book": float(buyers.mean()),
            "tail_share": float(buyers[len(buyers) // 5 :].sum() / buyers.sum()),
            "rare_books": float((buyers < 5).mean())}  # fmt: skip


# -- the dev JobSet's wall time ---------------------------------------------------------------


def _steps(name: str, base: Path, ease: bool) -> tuple[list[str], list[list[str]], list[str]]:
    """prepare, workers and finish args as the dev JobSet renders them, paths under `base`."""
    from workloads.bookstore import REGISTRY_PATH, RUN_DIR, WORKDIR_PATH, distributed_steps

    d = DATASETS[name]
    steps = distributed_steps(2, seed=42, customers=d["customers"], books=d["books"], orders=d["orders"])

    def local(args: Any) -> list[str]:
        out = [a.replace(RUN_DIR, str(base / "run")).replace(REGISTRY_PATH, str(base / "models"))
               .replace(WORKDIR_PATH, str(base / "work")) for a in args]  # fmt: skip
        if not ease and "--ease-memory-mib" in out:  # the code before issue 17 has no such flag
            i = out.index("--ease-memory-mib")
            del out[i : i + 2]
        return out

    return local(steps.prepare_args), [local(steps.worker_args)] * 2, local(steps.finish_args)


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Exit code and peak RSS (MiB) of a child, from wait4's rusage."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def _jobset_once(name: str, base: Path, package_root: Path, ease: bool) -> dict[str, Any]:
    prepare, workers, fin = _steps(name, base, ease)
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(package_root)}
    py = [sys.executable, "-m", "recommender"]
    logs = base / "logs"
    logs.mkdir(parents=True)
    t0 = time.perf_counter()
    subprocess.run([*py, *prepare], env=env, check=True, capture_output=True, cwd=package_root)
    t1 = time.perf_counter()
    procs = [subprocess.Popen([*py, *args, "--quiet"], env={**env, "JOB_COMPLETION_INDEX": str(i)},
                              stdout=subprocess.DEVNULL, stderr=(logs / f"worker{i}").open("wb"), cwd=package_root)
             for i, args in enumerate(workers)]  # fmt: skip
    finisher = subprocess.Popen([*py, *fin, "--quiet"], env=env, stdout=(logs / "finish.json").open("wb"),
                                stderr=(logs / "finish").open("wb"), cwd=package_root)  # fmt: skip
    peaks = []
    for i, proc in enumerate([*procs, finisher]):
        code, peak = _wait(proc)
        assert code == 0, (logs / ("finish" if proc is finisher else f"worker{i}")).read_text()[-2000:]
        peaks.append(peak)
    t2 = time.perf_counter()
    result = json.loads((logs / "finish.json").read_text())
    winner = (result.get("selection") or {}).get("winner")
    return {"prepare_seconds": t1 - t0, "train_and_finish_seconds": t2 - t1, "total_seconds": t2 - t0,
            "winner": winner, "ndcg@10_test": result["metrics"]["model"]["ndcg@10"],
            "peak_rss_mib": {"workers": peaks[:-1], "finish": peaks[-1]}}  # fmt: skip


def _jobset(root: Path, repeats: int, datasets: list[str]) -> dict[str, Any]:
    before = root / "before-code"
    before.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_COMMIT, "recommender"], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
    out: dict[str, Any] = {}
    for name in datasets:
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for rep in range(repeats):
            order = ("before", "after") if rep % 2 == 0 else ("after", "before")
            for variant in order:
                base = root / f"jobset-{name}-{variant}-{rep}"
                code = before if variant == "before" else ROOT
                runs[variant].append(_jobset_once(name, base, code, ease=variant == "after"))
                r = runs[variant][-1]
                print(f"jobset {name} {variant} rep {rep + 1}: total {r['total_seconds']:.1f}s (prepare "
                      f"{r['prepare_seconds']:.1f}s), winner {r['winner']}, peak RSS {r['peak_rss_mib']}, load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        med = {v: statistics.median(r["total_seconds"] for r in runs[v]) for v in runs}
        out[name] = {"runs": runs, "median_total_seconds": med, "ratio_after_before": med["after"] / med["before"]}
        print(f"jobset {name}: median before {med['before']:.1f}s, after {med['after']:.1f}s, ratio "
              f"{med['after'] / med['before']:.2f}", flush=True)  # fmt: skip
    return out


def _machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")  # fmt: skip
    return {"cpu": cpu, "nproc": os.cpu_count(), "loadavg_at_start": os.getloadavg()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("quality", "jobset", "all"), default="quality")
    p.add_argument("--datasets", default="standard,platform,longtail", help="comma-separated, of " + ",".join(DATASETS))
    p.add_argument("--repeats", type=int, default=3, help="jobset runs per variant and data set")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    warnings.filterwarnings("ignore", module="implicit")  # "expects CSR input": a conversion, not a problem
    names = [n for n in args.datasets.split(",") if n]
    root = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    result: dict[str, Any] = {"machine": _machine()}
    if args.part in ("quality", "all"):
        result["quality"] = {name: _quality(name, root) for name in names}
    if args.part in ("jobset", "all"):
        result["jobset"] = _jobset(root, args.repeats, [n for n in names if n != "longtail"])
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
