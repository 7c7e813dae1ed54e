"""Poll one HTTP endpoint until told to stop, record every failed request, fail if there was one.

Used by the e2e job's upgrade leg: started in the background before `pulumi up` moves the stack
from the previous release's versions to the current ones, stopped (``--stop-file``) after it.

    python scripts/poll_service.py URL --stop-file F [--interval 1] [--max-requests 2400]
        [--max-seconds 1800] [--warmup-seconds 60] [--log poll.log]

A request fails unless it answers 200 with a non-empty JSON body within ``--timeout``. Requests
before the first success (at most ``--warmup-seconds``: a port-forward starting) are not counted.
Bounded in count and time: reaching either bound before the stop file exists is a failure too
(the poll no longer covers what it was started for). Exit 0: every counted request succeeded;
1: some failed (each is in the log with its time and error) or a bound was hit; 2: never answered.
Standard library only: it runs beside the job, not in the platform.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def probe(url: str, timeout: float) -> str | None:
    """None if ``url`` answered 200 with a non-empty JSON body, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        return f"{type(err).__name__}: {getattr(err, 'reason', err)}"
    if status != 200:
        return f"HTTP {status}"
    try:
        return None if json.loads(body) else "empty JSON answer"
    except ValueError:
        return f"not JSON: {body[:80]!r}"


def poll(
    url: str,
    *,
    stop_file: Path,
    interval: float,
    max_requests: int,
    max_seconds: float,
    warmup_seconds: float,
    timeout: float,
    log: TextIO,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    start = clock()

    def note(line: str) -> None:
        print(f"{clock() - start:8.1f}s {line}", file=log, flush=True)

    while (error := probe(url, timeout)) is not None:
        if clock() - start >= warmup_seconds:
            note(f"never answered within {warmup_seconds:g}s: {error}")
            return 2
        time.sleep(interval)
    note("answering; polling until the stop file appears")
    requests, failures = 0, 0
    began = clock()
    while not stop_file.exists():
        if requests >= max_requests or clock() - began >= max_seconds:
            note(f"bound reached ({requests} requests, {clock() - began:.0f}s) before {stop_file} appeared")
            failures += 1
            break
        requests += 1
        error = probe(url, timeout)
        if error is not None:
            failures += 1
            note(f"FAILED request {requests}: {error}")
        time.sleep(interval)
    note(f"{requests} requests, {failures} failed")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--stop-file", type=Path, required=True, help="stop polling once this file exists")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between requests (default: 1)")
    parser.add_argument("--max-requests", type=int, default=2400, help="at most this many requests (default: 2400)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="at most this long (default: 1800)")
    parser.add_argument("--warmup-seconds", type=float, default=60, help="time allowed to first answer (default: 60)")
    parser.add_argument("--timeout", type=float, default=5, help="per-request timeout in seconds (default: 5)")
    parser.add_argument("--log", type=Path, help="also write the record here")
    args = parser.parse_args(argv)
    if args.max_requests < 1 or args.max_seconds <= 0 or args.interval <= 0:
        parser.error("--max-requests, --max-seconds and --interval must be positive")
    out = args.log.open("a") if args.log else sys.stdout
    try:
        code = poll(
            args.url,
            stop_file=args.stop_file,
            interval=args.interval,
            max_requests=args.max_requests,
            max_seconds=args.max_seconds,
            warmup_seconds=args.warmup_seconds,
            timeout=args.timeout,
            log=out,
        )
    finally:
        if args.log:
            out.close()
    if args.log:
        sys.stdout.write(args.log.read_text())
    return code


if __name__ == "__main__":
    sys.exit(main())
