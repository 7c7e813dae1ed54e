"""The work behind each CLI command, as plain functions (the CLI only parses and prints)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recommender.artifact import load_artifact, read_metadata, write_artifact
from recommender.cpuclock import cpu_timer
from recommender.datacache import DataIdentity, load_interactions
from recommender.errors import InputError
from recommender.evaluate import check_gate, evaluate, split_last
from recommender.model import ItemKNN

__all__ = ["evaluate_artifact", "peak_memory_mib", "stderr_log", "train", "training_metadata"]

Log = Callable[[str], None]


def peak_memory_mib() -> float:
    """Peak resident memory since exec (VmHWM); ru_maxrss would include the parent's on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def progress_log(log: Log | None, what: str = "train") -> Callable[[int, int], None] | None:
    if log is None:
        return None
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 1.0:
            last[0] = now
            log(f"{what}: {done}/{total} ({done / total:.0%})")

    return report


def training_metadata(
    identity: DataIdentity, dataset: dict[str, int], model: ItemKNN, timings: dict[str, Any]
) -> dict[str, Any]:
    """An artifact's metadata before evaluation; `train` and `merge` both write this."""
    covered = float((model.neighbours[:, 0] >= 0).mean()) if model.n_items else 0.0
    return {
        "dataset_sha256": identity.orders_sha256,
        "catalog_sha256": identity.catalog_sha256,
        "dataset": dataset,
        "training": {"books_with_neighbours": covered},
        "timings": timings,
        "peak_memory_mib": round(peak_memory_mib(), 1),
    }


def train(
    orders: Path,
    out: Path,
    *,
    catalog: Path | None = None,
    k: int = 20,
    similarity: str = "cosine",
    threads: int = 2,
    log: Log | None = stderr_log,
) -> dict[str, Any]:
    """Fit on all orders and write the artifact; returns its metadata."""
    model = ItemKNN(K=k, similarity=similarity, num_threads=threads)  # validates params first
    t0 = time.perf_counter()
    identity = DataIdentity.of(orders, catalog)
    data = load_interactions(orders, catalog, identity)
    t1 = time.perf_counter()
    clock = cpu_timer()
    matrix, by_book = data.purchases()
    model.fit(matrix, progress=progress_log(log), by_book=by_book)
    fit = clock()
    dataset = {"customers": data.n_users, "books": data.n_items, "orders": int(data.users.size),
               "purchases": int(matrix.nnz)}  # fmt: skip
    timings = {"read_seconds": round(t1 - t0, 3), **fit}
    digest = write_artifact(out, model, data.item_ids, training_metadata(identity, dataset, model, timings))
    if log:
        log(f"train: {data.n_items} books, {matrix.nnz} purchases, fit {fit['fit_seconds']:.2f}s -> {out}"
            f" ({digest[:12]})")
    return read_metadata(out)


def evaluate_artifact(
    artifact_dir: Path,
    orders: Path,
    *,
    catalog: Path | None = None,
    top_n: int = 10,
    seed: int = 0,
    min_lift: float | None = None,
    log: Log | None = stderr_log,
) -> dict[str, Any]:
    """Retrain the artifact's configuration on a leave-last-out split, score it against
    popularity, store the metrics in the artifact (its digest covers them), then apply the gate."""
    if top_n < 1:
        raise InputError(f"--top-n must be >= 1, got {top_n}")
    art = load_artifact(artifact_dir)
    data = load_interactions(orders, catalog)
    if data.item_ids.shape != art.item_ids.shape or (data.item_ids != art.item_ids).any():
        raise InputError(f"--orders {orders} has other books than the artifact was trained on; pass the same data")
    params = art.model.params()
    split = split_last(data, seed)
    t0 = time.perf_counter()
    held_model = ItemKNN(
        K=art.model.K, similarity=art.model.similarity,
        bm25_k1=float(params["bm25_k1"]), bm25_b=float(params["bm25_b"]),  # type: ignore[arg-type]
        ease_l2=art.model.ease_l2,
    ).fit(split.train)  # fmt: skip
    report = evaluate(held_model, split, top_n)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    meta = dict(art.metadata)
    meta.pop("content_sha256", None)
    meta["metrics"] = {k: v for k, v in report.items() if k != "seconds"}
    meta.setdefault("timings", {})["evaluate_seconds"] = report["seconds"]
    write_artifact(artifact_dir, art.model, art.item_ids, meta)
    if log:
        ours, base = report["model"], report["popularity"]
        log(f"evaluate: ndcg@{top_n} {ours[f'ndcg@{top_n}']:.4f} vs popularity {base[f'ndcg@{top_n}']:.4f} "  # type: ignore[index]
            f"(lift {report['lift_ndcg']:+.1%}), hr@{top_n} {ours[f'hr@{top_n}']:.4f}")  # type: ignore[index]
    if min_lift is not None:
        check_gate(report, min_lift)
    return report
