"""Training speed, memory and neighbour agreement vs implicit 0.7.3 CosineRecommender(K=20).

    python benchmarks/bench_train.py            # standard data: 200k customers x 50k books, ~5M purchases

Each fit runs in a fresh subprocess so peak memory (ru_maxrss) is its own; both engines get
the same CSR matrix (saved once) and the same thread count. Needs `pip install -r
benchmarks/requirements.txt` (implicit is a benchmark-only dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mib() -> float:
    """Peak resident memory of this process since exec (VmHWM; ru_maxrss survives exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(engine: str, matrix: Path, out: Path, k: int, threads: int) -> None:
    x = sp.load_npz(matrix).tocsr()
    base = _rss_mib()
    if engine == "implicit":
        from implicit.nearest_neighbours import CosineRecommender

        model = CosineRecommender(K=k, num_threads=threads)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(x, show_progress=False)
        fit, cpu = time.perf_counter() - t0, time.process_time() - c0
        sim = model.similarity.tocsr()
        n = x.shape[1]
        idx = np.full((n, k), -1, dtype=np.int32)
        val = np.zeros((n, k), dtype=np.float32)
        self_included = 0
        for i in range(n):
            cols, vals = sim.indices[sim.indptr[i] : sim.indptr[i + 1]], sim.data[sim.indptr[i] : sim.indptr[i + 1]]
            self_included += int((cols == i).any())
            keep = cols != i
            order = np.lexsort((cols[keep], -vals[keep]))
            idx[i, : order.size] = cols[keep][order]
            val[i, : order.size] = vals[keep][order]
        extra = {"self_in_neighbours": self_included / n}
    else:
        from recommender.model import ItemKNN

        model = ItemKNN(K=k, num_threads=threads)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(x)
        fit, cpu = time.perf_counter() - t0, time.process_time() - c0
        idx, val = model.neighbours, model.scores
        extra = {}
    np.savez(out, idx=idx, val=val)
    print(json.dumps({"engine": engine, "fit_seconds": fit, "fit_cpu_seconds": cpu, "peak_mib": _rss_mib(),
                      "base_mib": base, **extra}))  # fmt: skip


def _run_child(engine: str, matrix: Path, out: Path, k: int, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", engine, "--matrix", str(matrix), "--neighbours", str(out),
           "--k", str(k), "--threads", str(threads)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _overlap(ours: Path, theirs: Path, n_compare: int) -> dict[str, float]:
    """Share of implicit's neighbours that we also keep, with and without excusing ties.

    A neighbour of implicit's that we do not keep is a tie when its cosine equals our last kept
    score: both sides compute the same cosine, so the cut among equal scores is arbitrary.
    """
    a, b = np.load(theirs), np.load(ours)
    ti, tv = a["idx"][:, :n_compare], a["val"][:, :n_compare]
    oi, ov = b["idx"][:, :n_compare], b["val"][:, :n_compare]
    valid = ti >= 0
    member = (ti[:, :, None] == oi[:, None, :]).any(axis=2) & valid
    last = np.where(oi >= 0, ov, np.inf).min(axis=1, keepdims=True)
    tie = valid & ~member & np.isclose(tv, last, rtol=1e-4, atol=1e-7)
    total = valid.sum()
    return {
        "exact_overlap": float(member.sum() / total),
        "overlap_ties_aside": float((member | tie).sum() / total),
        "compared_neighbours": int(total),
    }


def _machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kib = 0
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kib / 2**20, 1),
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": __import__("scipy").__version__}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument("--books", type=int, default=50_000)
    p.add_argument("--orders", type=int, default=5_600_000, help="orders drawn; ~5.0M distinct purchases")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", choices=("implicit", "ours"), help=argparse.SUPPRESS)
    p.add_argument("--matrix", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--neighbours", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args.child, args.matrix, args.neighbours, args.k, args.threads)
        return

    from recommender.datagen import DatasetSpec, generate_arrays

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    spec = DatasetSpec(seed=42, customers=args.customers, books=args.books, orders=args.orders)
    customer, book, _ = generate_arrays(spec)
    x = sp.csr_matrix((np.ones(customer.size, np.float32), (customer, book)), shape=(args.customers, args.books))
    x.sum_duplicates()
    x.data[:] = 1.0
    sp.save_npz(work / "x.npz", x, compressed=False)
    print(f"data: {x.shape[0]} customers x {x.shape[1]} books, {x.nnz} distinct purchases", flush=True)

    runs: dict[str, list[dict[str, float]]] = {"implicit": [], "ours": []}
    for rep in range(args.repeats):
        for engine in ("implicit", "ours"):  # interleaved so drift hits both alike
            r = _run_child(engine, work / "x.npz", work / f"{engine}.npz", args.k, args.threads)
            runs[engine].append(r)
            r["loadavg_1min"] = os.getloadavg()[0]
            print(f"  run {rep + 1} {engine:8s} fit {r['fit_seconds']:.2f}s (cpu {r['fit_cpu_seconds']:.2f}s)"
                  f" peak {r['peak_mib']:.0f} MiB, load {r['loadavg_1min']:.1f}", flush=True)  # fmt: skip

    def summary(engine: str) -> dict[str, float]:
        rs = runs[engine]
        return {
            "fit_seconds_median": statistics.median(r["fit_seconds"] for r in rs),
            "fit_seconds_min": min(r["fit_seconds"] for r in rs),
            "fit_seconds_max": max(r["fit_seconds"] for r in rs),
            "fit_seconds_per_run": [round(r["fit_seconds"], 3) for r in rs],
            "fit_cpu_seconds_median": statistics.median(r["fit_cpu_seconds"] for r in rs),
            "peak_mib": max(r["peak_mib"] for r in rs),
            "fit_extra_mib": max(r["peak_mib"] - r["base_mib"] for r in rs),
        }

    imp, ours = summary("implicit"), summary("ours")
    self_in = runs["implicit"][0].get("self_in_neighbours", 0.0)
    # implicit keeps the book itself among its K; compare its K-1 others with our best K-1.
    n_compare = args.k - 1 if self_in > 0.5 else args.k
    result = {
        "machine": _machine(),
        "data": {"customers": x.shape[0], "books": x.shape[1], "purchases": int(x.nnz), "zipf": spec.zipf_exponent},
        "k": args.k, "threads": args.threads, "repeats": args.repeats,
        "implicit": imp, "ours": ours,
        "loadavg_1min_per_run": [round(r["loadavg_1min"], 2) for r in runs["ours"]],
        "ratios": {
            "fit_time_ours_over_implicit": ours["fit_seconds_median"] / imp["fit_seconds_median"],
            # Each pair ran back to back, so their ratio sees about the same load.
            "fit_time_per_pair": [round(o["fit_seconds"] / i["fit_seconds"], 3)
                                  for o, i in zip(runs["ours"], runs["implicit"], strict=True)],
            "fit_cpu_ours_over_implicit": ours["fit_cpu_seconds_median"] / imp["fit_cpu_seconds_median"],
            "peak_memory_ours_over_implicit": ours["peak_mib"] / imp["peak_mib"],
            "fit_extra_memory_ours_over_implicit": ours["fit_extra_mib"] / max(imp["fit_extra_mib"], 1e-9),
        },
        "neighbours": {"implicit_includes_self": self_in, "compared_per_book": n_compare,
                       **_overlap(work / "ours.npz", work / "implicit.npz", n_compare)},
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
