"""Command line: ``python -m mlplatform.report gpu-usage --prometheus URL --since 7d --price-per-gpu-hour 2.50``.

Reads Prometheus only; needs no cluster credentials beyond a way to reach Prometheus (a
port-forward). Exit codes: 0 printed, 1 Prometheus could not answer, 2 bad arguments. Every
error is one line on stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import NoReturn

from .gpu_usage import collect, csv_text, table_text
from .prometheus import Prometheus, PrometheusError, check_url

__all__ = ["main", "parse_duration"]

EXIT_UNAVAILABLE, EXIT_USAGE = 1, 2
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}
_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
MAX_WINDOW_DAYS = 400


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``7d``, ``36h``, ``1w2d`` or ``90m`` (1 minute to 400 days)."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 7d, 36h, 1w2d or 90m")
    seconds = sum(int(n) * _UNITS[u] for n, u in zip(match.groups(), "wdhm", strict=True) if n)
    if not 60 <= seconds <= MAX_WINDOW_DAYS * 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: from 1m to {MAX_WINDOW_DAYS}d")
    return seconds


def _price(text: str) -> Decimal:
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number such as 2.50") from None
    if not price.is_finite() or price < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a price >= 0, such as 2.50")
    return price


def _url(text: str) -> str:
    try:
        return check_url(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < seconds <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 600 seconds")
    return seconds


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the default prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mlplatform.report", description="Reports from the platform's Prometheus.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    gpu = commands.add_parser(
        "gpu-usage",
        help="GPU-hours each team was allocated (Kueue), kept busy and left idle, and their cost",
        description="GPU-hours each team was allocated by Kueue, kept busy and left idle over a window ending "
        "now, and their cost. Needs ml-platform:monitoring (the recording rules team:gpus_*:sum).",
    )
    gpu.add_argument("--prometheus", required=True, type=_url, metavar="URL", help="e.g. http://localhost:9090")
    gpu.add_argument("--since", default=parse_duration("7d"), type=parse_duration, metavar="DURATION",
                     help="window ending now: 7d (default), 36h, 1w2d, 90m")  # fmt: skip
    gpu.add_argument("--price-per-gpu-hour", required=True, type=_price, metavar="PRICE", help="e.g. 2.50")
    gpu.add_argument("--format", choices=("table", "csv"), default="table")
    gpu.add_argument("--timeout", type=_timeout, default=30.0, metavar="SECONDS", help="per query (default 30)")
    return parser


def main(argv: Sequence[str] | None = None, *, now: float | None = None) -> int:
    args = _parser().parse_args(argv)
    prometheus = Prometheus(args.prometheus, timeout_seconds=args.timeout)
    end = float(int(time.time())) if now is None else now  # whole seconds: the window reads better
    try:
        report = collect(prometheus, window_seconds=args.since, end=end, price_per_gpu_hour=args.price_per_gpu_hour)
    except PrometheusError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stdout.write(table_text(report) if args.format == "table" else csv_text(report))
    return 0
