"""`python -m recommender <command>`: argument parsing and one-line errors with exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from recommender import __version__
from recommender.contract import (
    DEFAULT_ALIAS,
    DEFAULT_POLL_SECONDS,
    DEFAULT_PORT,
    ENV_MODEL,
    ENV_REGISTRY,
    ENV_SHARD_INDEX,
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
)
from recommender.errors import InputError, RecommenderError

__all__ = ["build_parser", "main"]

_EPILOG = "exit codes: 0 ok, 1 internal error, 2 bad input, 3 evaluation gate failed, 4 registry error"


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _mebibytes(text: str) -> int:
    return _whole_number(text, 0)


def _seconds(text: str) -> float:
    """A duration: 0 or more seconds, finite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be <= 65535, got {value}")
    return value


_SIMILARITIES = ("cosine", "bm25", "tfidf")  # recommender.model.SIMILARITIES, without importing numpy
_CANDIDATES = (*_SIMILARITIES, "ease")  # recommender.model.MODEL_KINDS


def _similarity_list(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in _CANDIDATES]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(_CANDIDATES)}, got {text!r}")
    return values


def _positive_float_list(text: str) -> tuple[float, ...]:
    values = tuple(_positive_float(v.strip()) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return values


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(_positive_int(v.strip()) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 1, got {text!r}")
    return values


def _shard_spec(text: str) -> tuple[int, int]:
    from recommender.errors import InputError
    from recommender.shards import parse_shard

    try:
        return parse_shard(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--shard ")) from None


def _registry_args(p: argparse.ArgumentParser, *, alias: bool = True) -> None:
    p.add_argument("--registry", type=Path, default=os.environ.get(ENV_REGISTRY),
                   help=f"registry root directory (default: ${ENV_REGISTRY})")
    p.add_argument("--model", default=os.environ.get(ENV_MODEL),
                   help=f"model name in the registry (default: ${ENV_MODEL})")
    if alias:
        p.add_argument("--alias", default=DEFAULT_ALIAS, help="alias name (default: %(default)s)")


def _train_args(p: argparse.ArgumentParser, *, threads: bool = True) -> None:
    p.add_argument("--k", type=_positive_int, default=20,
                   help="neighbours kept per book; with selection, the default candidate (default: %(default)s)")
    p.add_argument("--similarity", choices=_SIMILARITIES, default="cosine",
                   help="co-occurrence weighting; with selection, the default candidate (default: %(default)s)")
    if threads:
        p.add_argument("--threads", type=_positive_int, default=2, help="training threads (default: %(default)s)")


def _select_args(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    g = p.add_argument_group("model selection (workers, merge and finish must be given the same values)")
    g.add_argument("--candidates", type=_similarity_list,
                   help="similarities compared on the validation split, with --similarity (default: cosine,bm25,ease)")
    g.add_argument("--k-grid", type=_int_list, help="neighbour counts compared, with --k (default: 5,10,20,40)")
    g.add_argument("--ease-l2-grid", type=_positive_float_list,
                   help="EASE's regularisation values λ compared (default: 50,200)")
    g.add_argument("--ease-memory-mib", type=_mebibytes, metavar="MIB",
                   help="EASE is a candidate only if its dense books x books matrix, 16·books² bytes, fits in this "
                        "many MiB; otherwise the selection records why it was skipped (default: 1024)")  # fmt: skip
    g.add_argument("--no-select", action="store_true",
                   help="no comparison: train and gate --similarity/--k only (no validation fits)")
    if seed:
        g.add_argument("--seed", type=int, help="seed of the random test/validation split of orders without"
                       " timestamps (default: 0)")  # fmt: skip


def _shard_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--shards-dir", type=Path, required=required,
                   help="directory every worker and the final step share; shard files are named by content")
    if not required:
        p.add_argument("--shard", type=_shard_spec, metavar="I/N",
                       help="compute shard I of N, zero-based (default: from --shards and $" + ENV_SHARD_INDEX + ")")
    p.add_argument("--shards", type=_positive_int, required=required, metavar="N",
                   help="number of shards" + ("" if required else f" (the index then comes from ${ENV_SHARD_INDEX},"
                                              " which Kubernetes sets in each pod of an indexed Job)"))  # fmt: skip


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    p.add_argument("--shape", choices=("standard", "longtail"), default="standard",
                   help="standard: the platform's training data; longtail: fewer orders per customer, a flatter "
                        "popularity curve and fewer buyers per book (default: %(default)s)")  # fmt: skip
    p.add_argument("--customers", type=_positive_int, help="(default: 20000; longtail 50000)")
    p.add_argument("--books", type=_positive_int, help="(default: 5000; longtail 7000)")
    p.add_argument("--orders", type=_positive_int, help="(default: 200000; longtail 120000)")


def _spec(args: argparse.Namespace) -> Any:
    from recommender.datagen import DatasetSpec

    sizes = {k: getattr(args, k) for k in ("customers", "books", "orders") if getattr(args, k) is not None}
    return DatasetSpec.shaped(args.shape, seed=args.seed, **sizes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recommender",
        description="The Bookstore recommender: data -> train -> evaluate -> register -> serve.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"recommender {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="write a seeded synthetic Bookstore (catalog, orders, manifest)",
                       epilog=_EPILOG)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    _spec_args(p)

    p = sub.add_parser("train", help="fit the model into an artifact (--out), or one shard of it (--shards-dir)",
                       epilog=_EPILOG)  # fmt: skip
    p.add_argument("--orders", type=Path, required=True, help="CSV with customer_id,book_id[,ordered_at]")
    p.add_argument("--catalog", type=Path, help="CSV with book_id (books never ordered are still known)")
    p.add_argument("--out", type=Path, help="artifact directory to write (one process, --similarity/--k only)")
    _train_args(p)
    _shard_args(p, required=False)
    _select_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = sub.add_parser("merge", help="combine the N shards into the artifact `train --out` writes", epilog=_EPILOG)
    p.add_argument("--orders", type=Path, required=True, help="the orders the workers read")
    p.add_argument("--catalog", type=Path, help="the catalogue the workers read")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    _shard_args(p, required=True)
    _train_args(p, threads=False)
    _select_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = sub.add_parser("finish", help="merge shards -> select on validation -> evaluate (gate) -> register -> promote",
                       epilog=_EPILOG)  # fmt: skip
    p.add_argument("--orders", type=Path, required=True, help="the orders the workers read")
    p.add_argument("--catalog", type=Path, help="the catalogue the workers read")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write before registering")
    _shard_args(p, required=True)
    _registry_args(p)
    _train_args(p, threads=False)
    _select_args(p)
    p.add_argument("--top-n", type=_positive_int, default=10, help="cut-off of the metrics (default: %(default)s)")
    p.add_argument("--min-lift", type=float, default=0.1, help="evaluation gate (default: %(default)s)")
    p.add_argument("--wait-for-shards", type=_seconds, default=0.0, metavar="SECONDS",
                   help="wait up to this long for the workers' shards (start with the workers); 0 = they must "
                        "exist already (default: %(default)s)")  # fmt: skip
    p.add_argument("--cleanup-dir", type=Path,
                   help="the run's scratch (holding --shards-dir, e.g. the shared data too): removed once the "
                        "version is promoted, kept on failure for a resume")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = sub.add_parser("evaluate", help="leave-last-out HR/NDCG/Recall vs popularity; --min-lift gate",
                       epilog=_EPILOG)
    p.add_argument("--artifact", type=Path, required=True, help="artifact directory written by train")
    p.add_argument("--orders", type=Path, required=True, help="the orders the artifact was trained on")
    p.add_argument("--catalog", type=Path)
    p.add_argument("--top-n", type=_positive_int, default=10, help="cut-off K of the metrics (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split without timestamps")
    p.add_argument("--min-lift", type=float,
                   help="fail (exit 3) unless NDCG beats popularity by this fraction (0.1 = +10%%)")

    p = sub.add_parser("register", help="add an artifact to the registry as an immutable version", epilog=_EPILOG)
    _registry_args(p, alias=False)
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--parent-alias", default=DEFAULT_ALIAS, help="alias recorded as the parent in lineage")

    p = sub.add_parser("promote", help="point an alias at a version (atomic)", epilog=_EPILOG)
    _registry_args(p)
    p.add_argument("--version", dest="ref", required=True, help="version id, unique prefix or alias")

    p = sub.add_parser("rollback", help="move an alias back to its previous version", epilog=_EPILOG)
    _registry_args(p)

    p = sub.add_parser("list", help="versions, aliases and lineage of a model (JSON)", epilog=_EPILOG)
    _registry_args(p, alias=False)

    p = sub.add_parser("serve", help="HTTP server for the aliased model (hot-swaps on alias change)",
                       epilog=_EPILOG)
    _registry_args(p)
    p.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="(default: %(default)s)")
    p.add_argument("--poll-seconds", type=_positive_float, default=DEFAULT_POLL_SECONDS,
                   help="how often the alias is checked (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=_positive_int, default=1 << 20,
                   help="larger request bodies get 413 (default: %(default)s)")
    p.add_argument("--access-log", action="store_true", help="log every request as JSON (slower)")

    p = sub.add_parser("pipeline", help="generate -> train -> select -> evaluate (gate) -> register -> promote",
                       epilog=_EPILOG)
    p.add_argument("--workdir", type=Path, required=True, help="scratch for data and the artifact")
    _registry_args(p)
    _spec_args(p)
    _train_args(p)
    _select_args(p, seed=False)
    p.add_argument("--top-n", type=_positive_int, default=10)
    p.add_argument("--min-lift", type=float, default=0.1, help="evaluation gate (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def _require(args: argparse.Namespace, *names: str) -> None:
    env = {"registry": ENV_REGISTRY, "model": ENV_MODEL}
    for name in names:
        if getattr(args, name, None) in (None, ""):
            raise InputError(f"--{name} is required (or set ${env[name]})")


def _seed(args: argparse.Namespace) -> int:
    seed = 0 if args.seed is None else args.seed
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    return seed


def _candidates(args: argparse.Namespace) -> tuple[Any, ...]:
    from recommender.selection import (
        DEFAULT_CANDIDATES,
        DEFAULT_EASE_L2_GRID,
        DEFAULT_K_GRID,
        Candidate,
        candidate_grid,
    )

    default = Candidate(args.similarity, args.k)
    if args.no_select:
        if args.candidates or args.k_grid or args.ease_l2_grid:
            raise InputError("--no-select trains --similarity/--k only; drop --candidates, --k-grid and "
                             "--ease-l2-grid, or --no-select")  # fmt: skip
        return (default,)
    return candidate_grid(default, args.candidates or DEFAULT_CANDIDATES, args.k_grid or DEFAULT_K_GRID,
                          args.ease_l2_grid or DEFAULT_EASE_L2_GRID)  # fmt: skip


def _ease_memory_mib(args: argparse.Namespace) -> int:
    from recommender.selection import DEFAULT_EASE_MEMORY_MIB

    return DEFAULT_EASE_MEMORY_MIB if args.ease_memory_mib is None else int(args.ease_memory_mib)


def _plan(args: argparse.Namespace) -> Any:
    from recommender.selection import plan_for

    return plan_for(_candidates(args), _seed(args), ease_memory_mib=_ease_memory_mib(args))


def _shard_index(args: argparse.Namespace) -> tuple[int, int]:
    if args.shard is not None:
        index, count = args.shard
        if args.shards is not None and args.shards != count:
            raise InputError(f"--shard {index}/{count} and --shards {args.shards} disagree about the number of shards")
        return index, count
    if args.shards is None:
        raise InputError(f"which shard? pass --shard I/N, or --shards N with ${ENV_SHARD_INDEX} set"
                         " (Kubernetes sets it in each pod of an indexed Job)")  # fmt: skip
    raw = os.environ.get(ENV_SHARD_INDEX, "").strip()
    if not raw:
        raise InputError(f"--shards {args.shards} takes the shard index from ${ENV_SHARD_INDEX}, which is not set;"
                         f" pass --shard I/{args.shards} instead, or run in an indexed Job")  # fmt: skip
    try:
        index = int(raw)
    except ValueError:
        index = -1
    if not 0 <= index < args.shards:
        raise InputError(f"${ENV_SHARD_INDEX}={raw!r} is not a shard index in 0..{args.shards - 1}"
                         f" for --shards {args.shards}")  # fmt: skip
    return index, args.shards


def _train(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    from recommender import commands, distributed

    if args.shards_dir is None:
        given = [f for f, v in (("--shard", args.shard), ("--shards", args.shards), ("--candidates", args.candidates),
                                ("--k-grid", args.k_grid), ("--seed", args.seed), ("--ease-l2-grid", args.ease_l2_grid),
                                ("--ease-memory-mib", args.ease_memory_mib)) if v is not None]  # fmt: skip
        given += ["--no-select"] if args.no_select else []
        if given:
            raise InputError(f"{', '.join(given)} apply to sharded training only; add --shards-dir DIR")
        if args.out is None:
            raise InputError("train needs --out DIR (one process), or --shards-dir DIR with --shard I/N or --shards N"
                             " (one worker of a distributed run)")  # fmt: skip
        return commands.train(args.orders, args.out, catalog=args.catalog, k=args.k, similarity=args.similarity,
                              threads=args.threads, log=log)  # fmt: skip
    if args.out is not None:
        raise InputError("--out and --shards-dir exclude each other: a worker writes a shard into --shards-dir;"
                         " `merge` or `finish` writes the artifact")  # fmt: skip
    index, count = _shard_index(args)
    return distributed.train_shard(args.orders, args.catalog, args.shards_dir, _plan(args), index, count,
                                   threads=args.threads, log=log)  # fmt: skip


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _run(args: argparse.Namespace) -> int:
    from recommender import commands
    from recommender.registry import Registry

    log = None if getattr(args, "quiet", False) else commands.stderr_log
    if args.command == "generate":
        from recommender.datagen import generate

        _print_json(generate(_spec(args), args.out))
    elif args.command == "train":
        _print_json(_train(args, log))
    elif args.command == "merge":
        from recommender import distributed
        from recommender.selection import Candidate

        _print_json(distributed.merge(args.orders, args.catalog, args.shards_dir, _plan(args), args.shards, args.out,
                                      Candidate(args.similarity, args.k), log=log))  # fmt: skip
    elif args.command == "finish":
        _require(args, "registry", "model")
        from recommender import distributed

        _print_json(distributed.finish(
            args.orders, args.catalog, args.shards_dir, args.shards, args.out, registry=args.registry,
            model=args.model, alias=args.alias, candidates=_candidates(args), seed=_seed(args),
            ease_memory_mib=_ease_memory_mib(args), top_n=args.top_n,
            min_lift=args.min_lift, wait_seconds=args.wait_for_shards, cleanup_dir=args.cleanup_dir,
            log=log))  # fmt: skip
    elif args.command == "evaluate":
        _print_json(commands.evaluate_artifact(args.artifact, args.orders, catalog=args.catalog,
                                               top_n=args.top_n, seed=args.seed, min_lift=args.min_lift))  # fmt: skip
    elif args.command == "register":
        _require(args, "registry", "model")
        version, created = Registry(args.registry).register(args.model, args.artifact, parent_alias=args.parent_alias)
        _print_json({"model": args.model, "version": version, "created": created})
    elif args.command == "promote":
        _require(args, "registry", "model")
        version, changed = Registry(args.registry).promote(args.model, args.ref, args.alias)
        _print_json({"model": args.model, "alias": args.alias, "version": version, "changed": changed})
    elif args.command == "rollback":
        _require(args, "registry", "model")
        version = Registry(args.registry).rollback(args.model, args.alias)
        _print_json({"model": args.model, "alias": args.alias, "version": version})
    elif args.command == "list":
        _require(args, "registry", "model")
        _print_json(Registry(args.registry).describe(args.model))
    elif args.command == "serve":
        _require(args, "registry", "model")
        from recommender.server import ServerConfig, run

        run(ServerConfig(registry=args.registry, model=args.model, alias=args.alias, host=args.host,
                         port=args.port, poll_seconds=args.poll_seconds, max_body_bytes=args.max_body_bytes,
                         access_log=args.access_log))  # fmt: skip
    elif args.command == "pipeline":
        _require(args, "registry", "model")
        from recommender import distributed

        spec = _spec(args)
        result = distributed.run_pipeline(workdir=args.workdir, registry=args.registry, model=args.model,
                                          alias=args.alias, spec=spec, candidates=_candidates(args),
                                          min_lift=args.min_lift, ease_memory_mib=_ease_memory_mib(args),
                                          top_n=args.top_n, threads=args.threads, log=log)  # fmt: skip
        _print_json(result)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except RecommenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as err:  # permissions, full disk, read-only paths: the user can act on these
        print(f"error: {err.strerror or err} ({err.filename or 'no file'})", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:
        if os.environ.get("RECOMMENDER_DEBUG"):
            traceback.print_exc()
        print(f"error: internal error ({type(err).__name__}: {err}); rerun with RECOMMENDER_DEBUG=1",
              file=sys.stderr)
        return EXIT_INTERNAL
