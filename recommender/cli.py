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
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
)
from recommender.errors import InputError, RecommenderError

__all__ = ["build_parser", "main"]

_EPILOG = "exit codes: 0 ok, 1 internal error, 2 bad input, 3 evaluation gate failed, 4 registry error"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
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


def _registry_args(p: argparse.ArgumentParser, *, alias: bool = True) -> None:
    p.add_argument("--registry", type=Path, default=os.environ.get(ENV_REGISTRY),
                   help=f"registry root directory (default: ${ENV_REGISTRY})")
    p.add_argument("--model", default=os.environ.get(ENV_MODEL),
                   help=f"model name in the registry (default: ${ENV_MODEL})")
    if alias:
        p.add_argument("--alias", default=DEFAULT_ALIAS, help="alias name (default: %(default)s)")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=_positive_int, default=20, help="neighbours kept per book (default: %(default)s)")
    p.add_argument("--similarity", choices=("cosine", "bm25", "tfidf"), default="cosine",
                   help="co-occurrence weighting (default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, default=2, help="training threads (default: %(default)s)")


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    p.add_argument("--customers", type=_positive_int, default=20_000, help="(default: %(default)s)")
    p.add_argument("--books", type=_positive_int, default=5_000, help="(default: %(default)s)")
    p.add_argument("--orders", type=_positive_int, default=200_000, help="(default: %(default)s)")


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

    p = sub.add_parser("train", help="fit the item-to-item model and write an artifact directory", epilog=_EPILOG)
    p.add_argument("--orders", type=Path, required=True, help="CSV with customer_id,book_id[,ordered_at]")
    p.add_argument("--catalog", type=Path, help="CSV with book_id (books never ordered are still known)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    _train_args(p)
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

    p = sub.add_parser("pipeline", help="generate -> train -> evaluate (gate) -> register -> promote",
                       epilog=_EPILOG)
    p.add_argument("--workdir", type=Path, required=True, help="scratch for data and the artifact")
    _registry_args(p)
    _spec_args(p)
    _train_args(p)
    p.add_argument("--top-n", type=_positive_int, default=10)
    p.add_argument("--min-lift", type=float, default=0.1, help="evaluation gate (default: %(default)s)")
    return parser


def _require(args: argparse.Namespace, *names: str) -> None:
    env = {"registry": ENV_REGISTRY, "model": ENV_MODEL}
    for name in names:
        if getattr(args, name, None) in (None, ""):
            raise InputError(f"--{name} is required (or set ${env[name]})")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _run(args: argparse.Namespace) -> int:
    from recommender import commands
    from recommender.registry import Registry

    log = None if getattr(args, "quiet", False) else commands.stderr_log
    if args.command == "generate":
        from recommender.datagen import DatasetSpec, generate

        spec = DatasetSpec(seed=args.seed, customers=args.customers, books=args.books, orders=args.orders)
        _print_json(generate(spec, args.out))
    elif args.command == "train":
        meta = commands.train(args.orders, args.out, catalog=args.catalog, k=args.k,
                              similarity=args.similarity, threads=args.threads, log=log)  # fmt: skip
        _print_json(meta)
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
        from recommender.datagen import DatasetSpec

        spec = DatasetSpec(seed=args.seed, customers=args.customers, books=args.books, orders=args.orders)
        result = commands.run_pipeline(workdir=args.workdir, registry=args.registry, model=args.model,
                                       alias=args.alias, spec=spec, k=args.k, similarity=args.similarity,
                                       min_lift=args.min_lift, top_n=args.top_n, threads=args.threads)  # fmt: skip
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
