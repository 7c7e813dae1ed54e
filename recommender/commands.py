"""The work behind each CLI command, as plain functions (the CLI only parses and prints)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recommender.artifact import load_artifact, read_metadata, write_artifact
from recommender.data import read_orders
from recommender.datagen import DatasetSpec, generate
from recommender.errors import InputError
from recommender.evaluate import check_gate, evaluate, split_last
from recommender.hashing import sha256_file
from recommender.model import ItemKNN
from recommender.registry import Registry

__all__ = ["evaluate_artifact", "peak_memory_mib", "run_pipeline", "train"]

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


def _progress(log: Log | None) -> Callable[[int, int], None] | None:
    if log is None:
        return None
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 1.0:
            last[0] = now
            log(f"train: {done}/{total} book blocks ({done / total:.0%})")

    return report


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
    data = read_orders(orders, catalog)
    t1 = time.perf_counter()
    matrix = data.matrix()
    model.fit(matrix, progress=_progress(log))
    t2 = time.perf_counter()
    covered = float((model.neighbours[:, 0] >= 0).mean()) if model.n_items else 0.0
    metadata: dict[str, Any] = {
        "dataset_sha256": sha256_file(orders),
        "catalog_sha256": sha256_file(catalog) if catalog else None,
        "dataset": {"customers": data.n_users, "books": data.n_items, "orders": int(data.users.size),
                    "purchases": int(matrix.nnz)},
        "training": {"books_with_neighbours": covered},
        "timings": {"read_seconds": round(t1 - t0, 3), "fit_seconds": round(t2 - t1, 3)},
        "peak_memory_mib": round(peak_memory_mib(), 1),
    }  # fmt: skip
    digest = write_artifact(out, model, data.item_ids, metadata)
    if log:
        log(f"train: {data.n_items} books, {matrix.nnz} purchases, fit {t2 - t1:.2f}s -> {out} ({digest[:12]})")
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
    data = read_orders(orders, catalog)
    if data.item_ids.shape != art.item_ids.shape or (data.item_ids != art.item_ids).any():
        raise InputError(f"--orders {orders} has other books than the artifact was trained on; pass the same data")
    params = art.model.params()
    split = split_last(data, seed)
    t0 = time.perf_counter()
    held_model = ItemKNN(
        K=art.model.K, similarity=art.model.similarity,
        bm25_k1=float(params["bm25_k1"]), bm25_b=float(params["bm25_b"]),  # type: ignore[arg-type]
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


def run_pipeline(
    *,
    workdir: Path,
    registry: Path,
    model: str,
    alias: str,
    spec: DatasetSpec,
    k: int,
    similarity: str,
    min_lift: float,
    top_n: int = 10,
    threads: int = 2,
    log: Log | None = stderr_log,
) -> dict[str, Any]:
    """generate -> train -> evaluate (gate) -> register -> promote; idempotent for equal inputs."""
    reg = Registry(registry)
    reg.alias(model, alias)  # validates names before any work
    data_dir, artifact_dir = workdir / "data", workdir / "artifact"
    generate(spec, data_dir)
    if log:
        log(f"generate: {spec.orders} orders, {spec.customers} customers, {spec.books} books -> {data_dir}")
    orders, catalog = data_dir / "orders.csv", data_dir / "catalog.csv"
    train(orders, artifact_dir, catalog=catalog, k=k, similarity=similarity, threads=threads, log=log)
    report = evaluate_artifact(artifact_dir, orders, catalog=catalog, top_n=top_n, seed=spec.seed,
                               min_lift=min_lift, log=log)  # fmt: skip
    version, created = reg.register(model, artifact_dir, parent_alias=alias)
    _, moved = reg.promote(model, version, alias)
    if log:
        log(f"register: {model} {version[:12]} ({'new' if created else 'already registered'}); "
            f"{alias} -> {version[:12]} ({'moved' if moved else 'unchanged'})")  # fmt: skip
    return {"version": version, "created": created, "promoted": moved, "metrics": report}
