"""Training in shards: N processes each compute the neighbour lists of a block of books, and a
merge turns their files into exactly what one process computes.

Shard I of N owns books [a, b) (`shard_rows`: cuts at n*sqrt(I/N), because a later block has
more earlier books to pair with). It computes, for every fit of the plan (a split of the
orders x a similarity), its own books' top-kmax over columns [0, b) and the earlier books'
top-kmax over its columns [a, b) (`knn_fit.top_k_neighbours(rows=...)`). Every pair of books
is computed by exactly one shard, each list is an exact top-kmax of its columns, and the
column sets of a row's lists are disjoint and cover all books; so the top-kmax of their union
is the single-process answer, bit for bit (a product entry sums the same terms in the same
order whichever side computes it), ties included (lower book index first).

A shard file is named by the hash of everything it depends on (the data's SHA-256, the plan,
its index and the count), so a rerun finds the shards already written and skips them: a
restarted set resumes instead of starting over. Files appear only through an atomic rename.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender import __version__
from recommender.cpuclock import cpu_timer
from recommender.data import Interactions
from recommender.datacache import DataIdentity
from recommender.ease import DEFAULT_EASE_MEMORY_MIB, ease_skip_reason, ease_top_k
from recommender.errors import InputError
from recommender.evaluate import holdout_masks
from recommender.files import write_npz
from recommender.hashing import canonical_json, sha256_bytes
from recommender.knn_fit import top_k_neighbours
from recommender.model import SIMILARITIES, ItemKNN
from recommender.topk import csr_from_triples, csr_topk

__all__ = ["SPLITS", "MergedFits", "ShardPlan", "compute_shard", "ease_fit_name", "ease_owner", "merge_shards",
           "parse_shard", "shard_path", "shard_rows", "verify_shard"]  # fmt: skip

SHARD_FORMAT = 2  # bump when what a shard holds, or how it is computed, changes
SPLITS = ("all", "test", "validation")  # all orders; the test split's training part; validation's
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ShardPlan:
    """What every shard of a run computes: each split x similarity, top-kmax neighbours.

    Similarities and splits are kept in canonical order, so equal plans hash alike.
    """

    similarities: tuple[str, ...]
    kmax: int
    splits: tuple[str, ...] = ("all",)
    seed: int = 0  # seed of the random test/validation split when orders have no timestamps
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    ease_l2: tuple[float, ...] = ()  # EASE's λ values (none: no EASE fits); see `ease_fits`
    ease_memory_mib: int = DEFAULT_EASE_MEMORY_MIB  # EASE runs only if its dense matrix fits (`ease.ease_skip_reason`)

    def __post_init__(self) -> None:
        sims = tuple(s for s in SIMILARITIES if s in self.similarities)
        splits = tuple(s for s in SPLITS if s in self.splits)
        if not sims or len(sims) != len(set(self.similarities)):
            raise InputError(f"similarities must be among {', '.join(SIMILARITIES)}, got {list(self.similarities)}")
        if "all" not in splits or len(splits) != len(set(self.splits)):
            raise InputError(f"splits must include 'all' and be among {', '.join(SPLITS)}, got {list(self.splits)}")
        if self.kmax < 1:
            raise InputError(f"--k must be >= 1, got {self.kmax}")
        if any(not v > 0 for v in self.ease_l2) or self.ease_memory_mib < 0:
            raise InputError(f"--ease-l2-grid values must be > 0 and --ease-memory-mib >= 0, got "
                             f"{list(self.ease_l2)} and {self.ease_memory_mib}")  # fmt: skip
        object.__setattr__(self, "similarities", sims)
        object.__setattr__(self, "splits", splits)
        object.__setattr__(self, "ease_l2", tuple(sorted({float(v) for v in self.ease_l2})))

    def fits(self) -> list[tuple[str, str]]:
        """The item-kNN fits: every shard computes its part of each."""
        return [(split, sim) for split in self.splits for sim in self.similarities]

    def ease_fits(self, n_items: int) -> list[tuple[str, float]]:
        """The EASE fits for a catalogue of `n_items` books (none when it would not fit the memory
        budget). Each is computed whole by one shard (`ease_owner`): its dense inverse is the
        cost, so no two processes repeat one."""
        if not self.ease_l2 or ease_skip_reason(n_items, self.ease_memory_mib) is not None:
            return []
        return [(split, l2) for split in self.splits for l2 in self.ease_l2]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "similarities": list(self.similarities), "splits": list(self.splits),
                "ease_l2": list(self.ease_l2)}  # fmt: skip


def ease_fit_name(l2: float) -> str:
    """The key of an EASE fit in shard files and `MergedFits` (e.g. 'ease:200')."""
    return f"ease:{l2:g}"


def ease_owner(position: int, count: int) -> int:
    """The shard that computes the `position`-th EASE fit of the plan: round robin."""
    return position % count


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), zero-based like Kubernetes' JOB_COMPLETION_INDEX."""
    head, sep, tail = text.partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index = count = -1
    if not sep or count < 1 or not 0 <= index < count:
        raise InputError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4 for the first of 4), got {text!r}")
    return index, count


def shard_rows(n_items: int, index: int, count: int) -> tuple[int, int]:
    """Books [a, b) of shard `index` of `count`: cuts at n*sqrt(i/N), in exact integer arithmetic.

    Cuts are non-decreasing from 0 to n, so the shards tile the books with no gap or overlap
    for any count (with more shards than books, some are empty).
    """
    if not 0 <= index < count:
        raise InputError(f"shard index must be in 0..{count - 1}, got {index}")

    def cut(i: int) -> int:
        return math.isqrt(n_items * n_items * i // count)

    return cut(index), cut(index + 1)


def _identity_doc(identity: DataIdentity, plan: ShardPlan, index: int, count: int) -> dict[str, Any]:
    return {"format": SHARD_FORMAT, "package_version": __version__, "data": identity.as_dict(),
            "plan": plan.as_dict(), "index": index, "count": count}  # fmt: skip


def shard_path(directory: Path, identity: DataIdentity, plan: ShardPlan, index: int, count: int) -> Path:
    key = sha256_bytes(canonical_json(_identity_doc(identity, plan, index, count)))
    return directory / f"shard-{index:04d}-of-{count:04d}-{key[:32]}.npz"


def split_matrices(data: Interactions, plan: ShardPlan) -> dict[str, tuple[sp.csr_matrix, sp.csr_matrix]]:
    """The binary customer x book matrix each split's models train on (what evaluation
    retrains on), with the same as books x customers; all orders' straight from the parse cache."""
    out = {"all": data.purchases()}
    if len(plan.splits) > 1:
        test, validation = holdout_masks(data, plan.seed)
        masks = {"test": ~test, "validation": ~test & ~validation}
        for split in plan.splits[1:]:
            x = data.matrix(masks[split])
            out[split] = x, x.tocsc().T
    return out


def compute_shard(
    data: Interactions,
    identity: DataIdentity,
    plan: ShardPlan,
    index: int,
    count: int,
    *,
    threads: int = 2,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and header of one shard file (see `write_shard`)."""
    n = data.n_items
    a, b = shard_rows(n, index, count)
    stored = b if b > a else 0  # rows [0, a) earlier books' lists, then [a, b) the shard's own
    arrays: dict[str, np.ndarray] = {"item_ids": data.item_ids}
    clock = cpu_timer()
    matrices = split_matrices(data, plan)
    fits = plan.fits()
    for done, (split, sim) in enumerate(fits, start=1):
        model = ItemKNN(K=plan.kmax, similarity=sim, bm25_k1=plan.bm25_k1, bm25_b=plan.bm25_b)
        x, xt = matrices[split]
        weights = model.weighting(x, xt)
        arrays.setdefault(f"popularity.{split}", np.diff(xt.indptr).astype(np.int64))
        # Only what this shard reads is weighed: books [0, b)'s buyers, and its own books' columns.
        idx, val = top_k_neighbours(weights.by_book(xt, b).T, plan.kmax, threads=threads, rows=(a, b),
                                    wr=weights.by_customer(x, a, b, xt), pattern=xt)  # fmt: skip
        arrays[f"idx.{split}.{sim}"], arrays[f"val.{split}.{sim}"] = idx[:stored], val[:stored]
        if progress:
            progress(done, len(fits))
    for pos, (split, l2) in enumerate(plan.ease_fits(n)):
        if ease_owner(pos, count) == index:  # a whole fit: all books' rows over all columns
            name = ease_fit_name(l2)
            arrays[f"idx.{split}.{name}"], arrays[f"val.{split}.{name}"] = ease_top_k(matrices[split][0], l2, plan.kmax)
    header = {
        **_identity_doc(identity, plan, index, count),
        "rows": [a, b],
        "stored_rows": stored,
        "n_items": n,
        "dataset": {"customers": data.n_users, "books": n, "orders": int(data.users.size),
                    "purchases": int(matrices["all"][0].nnz)},
        "timings": clock(),
    }  # fmt: skip
    return arrays, header


def write_shard(path: Path, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    """Atomically: a killed worker leaves at most a hidden temporary file, never a shard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(path, {"header": np.array(json.dumps(header, sort_keys=True)), **arrays})


# -- reading and merging ----------------------------------------------------------------------


def _corrupt(path: Path, err: object) -> InputError:
    return InputError(f"shard file {path} is corrupt or unreadable ({err}); delete it and rerun its worker")


def _header(npz: Any, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(str(npz["header"]))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        return header
    except Exception as err:
        raise _corrupt(path, err) from err


def _check_header(header: dict[str, Any], path: Path, identity: DataIdentity, plan: ShardPlan, index: int,
                  count: int) -> None:  # fmt: skip
    want = _identity_doc(identity, plan, index, count)
    if header.get("format") != SHARD_FORMAT or header.get("package_version") != __version__:
        raise InputError(f"shard file {path} was written by another version of the recommender; delete it and rerun")
    if header.get("data") != want["data"]:
        raise InputError(f"shard file {path} was computed from other data ({_short(header.get('data'))}, expected "
                         f"{_short(want['data'])}); delete it and rerun its worker on the same files")  # fmt: skip
    if header.get("plan") != want["plan"]:
        diff = _diff(header.get("plan"), want["plan"])
        raise InputError(f"shard file {path} was computed with other parameters ({diff});"
                         " pass the flags the workers used, or rerun them")  # fmt: skip
    if (header.get("index"), header.get("count")) != (index, count):
        raise InputError(f"shard file {path} holds shard {header.get('index')}/{header.get('count')}, "
                         f"not {index}/{count}")  # fmt: skip
    n = header.get("n_items")
    if not isinstance(n, int) or header.get("rows") != list(shard_rows(n, index, count)):
        raise InputError(f"shard file {path} covers books {header.get('rows')}, not shard {index}/{count}'s")


def _short(data: Any) -> str:
    if not isinstance(data, dict):
        return "unknown data"
    return f"orders {str(data.get('orders_sha256'))[:12]}, catalog {str(data.get('catalog_sha256'))[:12]}"


def _diff(got: Any, want: dict[str, Any]) -> str:
    if not isinstance(got, dict):
        return "unreadable plan"
    return ", ".join(f"{k} {got.get(k)!r} instead of {v!r}" for k, v in want.items() if got.get(k) != v)


def _fit_arrays(npz: Any, path: Path, header: dict[str, Any], plan: ShardPlan, split: str,
                sim: str) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    try:
        idx, val = npz[f"idx.{split}.{sim}"], npz[f"val.{split}.{sim}"]  # zip CRCs are checked on read
    except Exception as err:
        raise _corrupt(path, err) from err
    shape = (header["stored_rows"], plan.kmax)
    if idx.shape != shape or val.shape != shape or idx.dtype != np.int32 or val.dtype != np.float32:
        raise InputError(f"shard file {path} is corrupt: {split}/{sim} arrays are {idx.shape}, expected {shape}")
    # Lists must lie in the columns this shard computes: its own books' in [0, b), earlier
    # books' in [a, b); with distinct entries. Then merging never sees a pair twice.
    a, b = header["rows"]
    lo = np.where(np.arange(idx.shape[0]) < a, a, 0)[:, None]
    ok = (idx == -1) | ((idx >= lo) & (idx < b))
    srt = np.sort(idx, axis=1)
    if not ok.all() or ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any():
        raise InputError(f"shard file {path} is corrupt: {split}/{sim} neighbours outside the shard's books")
    return idx, val


def _ease_arrays(npz: Any, path: Path, header: dict[str, Any], plan: ShardPlan, split: str,
                 name: str) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A whole EASE fit held by its one owner shard: every book's list, distinct other books."""
    try:
        idx, val = npz[f"idx.{split}.{name}"], npz[f"val.{split}.{name}"]
    except Exception as err:
        raise _corrupt(path, err) from err
    n = header["n_items"]
    shape = (n, plan.kmax)
    if idx.shape != shape or val.shape != shape or idx.dtype != np.int32 or val.dtype != np.float32:
        raise InputError(f"shard file {path} is corrupt: {split}/{name} arrays are {idx.shape}, expected {shape}")
    srt = np.sort(idx, axis=1)
    own = idx == np.arange(n)[:, None]
    if (idx < -1).any() or (idx >= n).any() or own.any() or ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any():
        raise InputError(f"shard file {path} is corrupt: {split}/{name} neighbours outside the catalogue")
    return idx, val


def _array(npz: Any, path: Path, name: str) -> np.ndarray:
    try:
        return np.asarray(npz[name])
    except Exception as err:
        raise _corrupt(path, err) from err


def verify_shard(path: Path, identity: DataIdentity, plan: ShardPlan, index: int, count: int) -> dict[str, Any]:
    """Read a whole shard file and check it is the one asked for; its header, or InputError."""
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:
        raise _corrupt(path, err) from err
    with npz:
        header = _header(npz, path)
        _check_header(header, path, identity, plan, index, count)
        for split, sim in plan.fits():
            _fit_arrays(npz, path, header, plan, split, sim)
        for pos, (split, l2) in enumerate(plan.ease_fits(header["n_items"])):
            if ease_owner(pos, count) == index:
                _ease_arrays(npz, path, header, plan, split, ease_fit_name(l2))
        for name in ("item_ids", *(f"popularity.{s}" for s in plan.splits)):
            _array(npz, path, name)
    return header


def _other_runs(directory: Path, identity: DataIdentity, plan: ShardPlan, count: int) -> str:
    """Why the expected shards may be missing: shards of the same data with another count or plan."""
    counts, plans = set(), []
    for path in sorted(directory.glob("shard-*.npz")):
        try:
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(str(npz["header"]))
        except Exception:
            continue
        if not isinstance(header, dict) or header.get("data") != identity.as_dict():
            continue
        if header.get("plan") == plan.as_dict() and header.get("count") != count:
            counts.add(header.get("count"))
        elif header.get("plan") != plan.as_dict() and header.get("plan") not in plans:
            plans.append(header.get("plan"))
    hints = [f"it holds shards of this data for --shards {c}" for c in sorted(counts, key=str)]
    hints += [f"it holds shards of this data computed with {_diff(p, plan.as_dict())}" for p in plans[:2]]
    return "; " + "; ".join(hints) if hints else ""


def _locate(directory: Path, identity: DataIdentity, plan: ShardPlan, count: int) -> list[Path]:
    if count < 1:
        raise InputError(f"--shards must be >= 1, got {count}")
    if not directory.is_dir():
        raise InputError(f"--shards-dir {directory} does not exist; run the workers (`train --shard I/{count}`) first")
    paths = [shard_path(directory, identity, plan, i, count) for i in range(count)]
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    if missing:
        shown = ", ".join(f"{i}/{count}" for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise InputError(
            f"{len(missing)} of {count} shards missing in {directory} for this data and these parameters: {shown}"
            f"{_other_runs(directory, identity, plan, count)}. Run the missing workers (`train --shard I/{count}`"
            " with the same data and flags; finished shards are skipped), or give this command the --shards and"
            " selection flags the workers were given"
        )
    return paths


@dataclass
class MergedFits:
    """Every fit of a plan, merged: what one process would have computed."""

    plan: ShardPlan
    item_ids: np.ndarray
    dataset: dict[str, int]
    popularity: dict[str, np.ndarray]
    fits: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    shards: list[dict[str, Any]] = field(default_factory=list)  # per shard: rows, timings, memory

    @property
    def ease_skipped(self) -> str | None:
        """Why the plan's EASE fits were not computed (None: computed, or none planned)."""
        return ease_skip_reason(len(self.item_ids), self.plan.ease_memory_mib) if self.plan.ease_l2 else None

    def model(self, split: str, similarity: str, k: int, l2: float = 0.0) -> ItemKNN:
        """The model of one split, similarity (with λ = `l2` for EASE) and k <= kmax (top-k is a
        prefix of top-kmax)."""
        key = ease_fit_name(l2) if similarity == "ease" else similarity
        if (split, key) not in self.fits or not 1 <= k <= self.plan.kmax:
            have = ", ".join([*self.plan.similarities, *sorted({n for _, n in self.fits if n.startswith("ease")})])
            raise InputError(f"the shards hold no {split} fit for --similarity {key} --k {k}"
                             f" (they have {have} up to k={self.plan.kmax})")  # fmt: skip
        idx, val = self.fits[(split, key)]
        model = ItemKNN(K=k, similarity=similarity, bm25_k1=self.plan.bm25_k1, bm25_b=self.plan.bm25_b, ease_l2=l2)
        model.neighbours = np.ascontiguousarray(idx[:, :k])
        model.scores = np.ascontiguousarray(val[:, :k])
        model.popularity = self.popularity[split]
        return model


def _merge_fit(parts: list[tuple[dict[str, Any], np.ndarray, np.ndarray]], n: int, k: int,
               paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    rows, cols, vals = [], [], []
    for _, idx, val in parts:
        ok = idx >= 0  # stored rows are books [0, b): earlier shards' lists, then the shard's own
        rows.append(np.repeat(np.arange(idx.shape[0]), ok.sum(axis=1)))
        cols.append(idx[ok])
        vals.append(val[ok])
    # `_fit_arrays` checked each list stays in its shard's columns, so no pair comes twice.
    return csr_topk(csr_from_triples(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), (n, n)), k)


def merge_shards(directory: Path, identity: DataIdentity, plan: ShardPlan, count: int) -> MergedFits:
    """Read and check the `count` shards of this data and plan, and merge every fit."""
    paths = _locate(directory, identity, plan, count)
    with ExitStack() as stack:
        npzs = []
        for path in paths:
            try:
                npzs.append(stack.enter_context(np.load(path, allow_pickle=False)))
            except Exception as err:
                raise _corrupt(path, err) from err
        headers = [_header(npz, path) for npz, path in zip(npzs, paths, strict=True)]
        for i, (header, path) in enumerate(zip(headers, paths, strict=True)):
            _check_header(header, path, identity, plan, i, count)
        first, n = headers[0], headers[0]["n_items"]
        item_ids = _array(npzs[0], paths[0], "item_ids")
        popularity = {s: _array(npzs[0], paths[0], f"popularity.{s}") for s in plan.splits}
        for npz, header, path in zip(npzs[1:], headers[1:], paths[1:], strict=True):
            same = header["n_items"] == n and header.get("dataset") == first.get("dataset")
            same = same and np.array_equal(_array(npz, path, "item_ids"), item_ids)
            for s in plan.splits:
                same = same and np.array_equal(_array(npz, path, f"popularity.{s}"), popularity[s])
            if not same:
                raise InputError(f"shard file {path} disagrees with {paths[0]} about the books; rerun both workers")
        if item_ids.shape != (n,) or any(p.shape != (n,) for p in popularity.values()):
            raise InputError(f"shard file {paths[0]} is corrupt: {item_ids.shape} book ids for {n} books")
        fits = {}
        for split, sim in plan.fits():
            parts = [(h, *_fit_arrays(npz, path, h, plan, split, sim))
                     for npz, h, path in zip(npzs, headers, paths, strict=True)]  # fmt: skip
            fits[(split, sim)] = _merge_fit(parts, n, plan.kmax, paths)
        for pos, (split, l2) in enumerate(plan.ease_fits(n)):  # whole fits: taken from their owner
            owner, name = ease_owner(pos, count), ease_fit_name(l2)
            fits[(split, name)] = _ease_arrays(npzs[owner], paths[owner], headers[owner], plan, split, name)
    shards = [{"rows": h["rows"], "timings": h.get("timings"), "peak_memory_mib": h.get("peak_memory_mib")}
              for h in headers]  # fmt: skip
    return MergedFits(plan, item_ids, dict(first["dataset"]), popularity, fits, shards)

