"""The distributed training run, and the pipeline as the same steps in one process.

    generate (one pod)  ->  train --shard I/N (N pods)  ->  finish (one pod)
                            each writes one shard file      merge, select on validation,
                            into the shared --shards-dir    gate on test, register, promote

`run_pipeline` is those steps with N = 1 in one process, so a distributed run and the
pipeline promote the same version (same model bytes, same version id). Each step can be
rerun after a crash: generation rewrites the same bytes atomically, a finished shard is
skipped, and registering and promoting the same content again changes nothing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from recommender.artifact import write_artifact
from recommender.commands import Log, peak_memory_mib, progress_log, stderr_log, training_metadata
from recommender.datacache import DataIdentity, load_interactions
from recommender.datagen import DatasetSpec, generate
from recommender.errors import InputError
from recommender.evaluate import check_gate, evaluate, split_last, split_validation
from recommender.registry import Registry
from recommender.selection import DEFAULT_EASE_MEMORY_MIB, Candidate, plan_for, select
from recommender.shards import ShardPlan, compute_shard, merge_shards, shard_path, shard_rows, verify_shard, write_shard

__all__ = ["finish", "merge", "run_pipeline", "train_shard"]


def train_shard(
    orders: Path,
    catalog: Path | None,
    shards_dir: Path,
    plan: ShardPlan,
    index: int,
    count: int,
    *,
    threads: int = 2,
    log: Log | None = stderr_log,
) -> dict[str, Any]:
    """Compute shard `index` of `count` into `shards_dir`, unless a good copy is already there."""
    if not 0 <= index < count:
        raise InputError(f"shard index must be in 0..{count - 1} for {count} shards, got {index}")
    identity = DataIdentity.of(orders, catalog)
    path = shard_path(shards_dir, identity, plan, index, count)
    name = f"shard {index}/{count}"
    if path.is_file():
        try:
            header = verify_shard(path, identity, plan, index, count)
        except InputError as err:
            if log:
                log(f"train: {name}: the existing file is unusable ({err}); computing it again")
        else:
            if log:
                log(f"train: {name} already written ({path.name}); nothing to do")
            return {"shard": f"{index}/{count}", "file": str(path), "computed": False, "rows": header["rows"]}
    t0 = time.perf_counter()
    data = load_interactions(orders, catalog, identity)
    read_seconds = time.perf_counter() - t0
    a, b = shard_rows(data.n_items, index, count)
    what = f"train: {name}, books [{a}, {b}) of {data.n_items}, fits at k={plan.kmax}"
    arrays, header = compute_shard(data, identity, plan, index, count, threads=threads,
                                   progress=progress_log(log, what))  # fmt: skip
    header["timings"]["read_seconds"] = round(read_seconds, 3)
    header["peak_memory_mib"] = round(peak_memory_mib(), 1)
    write_shard(path, arrays, header)
    if log:
        log(f"train: {name} written to {path}")
    return {"shard": f"{index}/{count}", "file": str(path), "computed": True, "rows": [a, b],
            "timings": header["timings"], "peak_memory_mib": header["peak_memory_mib"]}  # fmt: skip


def merge(
    orders: Path,
    catalog: Path | None,
    shards_dir: Path,
    plan: ShardPlan,
    count: int,
    out: Path,
    default: Candidate,
    *,
    log: Log | None = stderr_log,
) -> dict[str, Any]:
    """Merge the shards into the artifact of `default` trained on all orders: the same model
    bytes and version id as `train --out` with that similarity and k."""
    identity = DataIdentity.of(orders, catalog)
    t0 = time.perf_counter()
    merged = merge_shards(shards_dir, identity, plan, count)
    model = default.model(merged, "all")
    timings = {"merge_seconds": round(time.perf_counter() - t0, 3), "shards": merged.shards}
    digest = write_artifact(out, model, merged.item_ids, training_metadata(identity, merged.dataset, model, timings))
    if log:
        log(f"merge: {count} shards, {len(merged.item_ids)} books -> {out} ({digest[:12]})")
    return {"artifact": str(out), "content_sha256": digest, "shards": count, "params": model.params()}


def wait_for_shards(
    shards_dir: Path,
    identity: DataIdentity,
    plan: ShardPlan,
    count: int,
    timeout_seconds: float,
    *,
    poll_seconds: float = 2.0,
    log: Log | None = stderr_log,
) -> None:
    """Return once every one of the ``count`` shards exists (workers write them atomically), or
    raise InputError naming the missing ones after ``timeout_seconds``."""
    expected = [shard_path(shards_dir, identity, plan, i, count) for i in range(count)]
    deadline = time.monotonic() + timeout_seconds
    reported = -1
    while missing := [i for i, path in enumerate(expected) if not path.exists()]:
        if time.monotonic() >= deadline:
            raise InputError(
                f"--wait-for-shards {timeout_seconds:g}: shards {missing} of {count} are still missing in "
                f"{shards_dir}; did their workers fail? (their pods' status and logs say why)"
            )
        if log and len(missing) != reported:
            log(f"finish: waiting for {len(missing)} of {count} shards in {shards_dir}")
            reported = len(missing)
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))


def finish(
    orders: Path,
    catalog: Path | None,
    shards_dir: Path,
    count: int,
    out: Path,
    *,
    registry: Path,
    model: str,
    alias: str,
    candidates: tuple[Candidate, ...],
    seed: int,
    ease_memory_mib: int = DEFAULT_EASE_MEMORY_MIB,
    top_n: int = 10,
    min_lift: float | None = None,
    wait_seconds: float = 0.0,
    cleanup_dir: Path | None = None,
    log: Log | None = stderr_log,
) -> dict[str, Any]:
    """[wait for the shards ->] merge -> select on validation -> score the winner on test (gate) ->
    register -> promote. ``wait_seconds`` > 0: this step may start with the workers (a gang-admitted
    set) and waits up to that long for their shards to appear. ``cleanup_dir``: the run's scratch
    (it must hold ``shards_dir``), removed once the version is promoted; kept on any failure, so a
    restarted run resumes from it."""
    if cleanup_dir is not None and not shards_dir.resolve().is_relative_to(cleanup_dir.resolve()):
        raise InputError(f"--cleanup-dir {cleanup_dir} must contain --shards-dir {shards_dir}: only a run's own "
                         "scratch is removed")  # fmt: skip
    if top_n < 1:
        raise InputError(f"--top-n must be >= 1, got {top_n}")
    reg = Registry(registry)
    reg.alias(model, alias)  # validates names before any work
    identity = DataIdentity.of(orders, catalog)
    plan = plan_for(candidates, seed, ease_memory_mib=ease_memory_mib)
    if wait_seconds > 0:
        wait_for_shards(shards_dir, identity, plan, count, wait_seconds, log=log)
    t0 = time.perf_counter()
    merged = merge_shards(shards_dir, identity, plan, count)
    t1 = time.perf_counter()
    data = load_interactions(orders, catalog, identity)
    if data.item_ids.shape != merged.item_ids.shape or (data.item_ids != merged.item_ids).any():
        raise InputError(f"--orders {orders} has other books than the shards; pass the files the workers read")
    test = split_last(data, seed)
    winner, selection = candidates[0], None
    if len(candidates) > 1:
        winner, selection = select(merged, candidates, split_validation(data, seed), test, top_n)
    report = evaluate(winner.model(merged, "test"), test, top_n)
    t2 = time.perf_counter()
    final = winner.model(merged, "all")
    timings = {"merge_seconds": round(t1 - t0, 3), "evaluate_seconds": round(t2 - t1, 3), "shards": merged.shards}
    meta = {**training_metadata(identity, merged.dataset, final, timings), "metrics": report}
    if selection is not None:
        meta["selection"] = selection
    digest = write_artifact(out, final, merged.item_ids, meta)
    if log:
        _log_evaluation(log, winner, selection, report, top_n)
    if min_lift is not None:
        check_gate(report, min_lift)
    version, created = reg.register(model, out, parent_alias=alias)
    _, moved = reg.promote(model, version, alias)
    if log:
        log(f"finish: {model} {version[:12]} ({'new' if created else 'already registered'}, artifact {digest[:12]}); "
            f"{alias} -> {version[:12]} ({'moved' if moved else 'unchanged'})")  # fmt: skip
    if cleanup_dir is not None:
        shutil.rmtree(cleanup_dir, ignore_errors=True)
        if log:
            log(f"finish: removed the run's scratch {cleanup_dir}")
    return {"version": version, "created": created, "promoted": moved, "metrics": report, "selection": selection}


def _log_evaluation(log: Log, winner: Candidate, selection: dict[str, Any] | None, report: dict[str, Any],
                    top_n: int) -> None:  # fmt: skip
    key = f"ndcg@{top_n}"
    if selection is not None:
        for row in selection["candidates"]:
            name = f"ease λ={row['l2']:g}" if row["similarity"] == "ease" else row["similarity"]
            log(f"select: {name:>12} k={row['k']:<3} validation {key} {row[key]:.4f} "
                f"hr@{top_n} {row[f'hr@{top_n}']:.4f}")  # fmt: skip
        if "skipped" in selection.get("ease", {}):
            log(f"select: {selection['ease']['skipped']}")
    ours, base = report["model"], report["popularity"]
    log(f"evaluate: {winner.similarity} k={winner.k}: test {key} {ours[key]:.4f} vs popularity {base[key]:.4f} "
        f"(lift {report['lift_ndcg']:+.1%}), hr@{top_n} {ours[f'hr@{top_n}']:.4f}")  # fmt: skip


def run_pipeline(
    *,
    workdir: Path,
    registry: Path,
    model: str,
    alias: str,
    spec: DatasetSpec,
    candidates: tuple[Candidate, ...],
    min_lift: float,
    ease_memory_mib: int = DEFAULT_EASE_MEMORY_MIB,
    top_n: int = 10,
    threads: int = 2,
    log: Log | None = stderr_log,
) -> dict[str, Any]:
    """generate -> train (one shard) -> finish; idempotent for equal inputs."""
    Registry(registry).alias(model, alias)  # validates names before any work
    data_dir = workdir / "data"
    generate(spec, data_dir)
    if log:
        log(f"generate: {spec.orders} orders, {spec.customers} customers, {spec.books} books -> {data_dir}")
    orders, catalog = data_dir / "orders.csv", data_dir / "catalog.csv"
    plan = plan_for(candidates, spec.seed, ease_memory_mib=ease_memory_mib)
    train_shard(orders, catalog, workdir / "shards", plan, 0, 1, threads=threads, log=log)
    return finish(orders, catalog, workdir / "shards", 1, workdir / "artifact", registry=registry, model=model,
                  alias=alias, candidates=candidates, seed=spec.seed, ease_memory_mib=ease_memory_mib, top_n=top_n,
                  min_lift=min_lift, log=log)  # fmt: skip
