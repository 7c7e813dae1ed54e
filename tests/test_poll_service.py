"""scripts/poll_service.py, run for real against a local HTTP server that answers as each test scripts it."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlplatform.capture import REPO_ROOT

POLLER = REPO_ROOT / "scripts" / "poll_service.py"
Answer = Callable[[int], tuple[int, bytes]]  # request number (from 1) -> status, body


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        count = {"n": 0}
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    count["n"] += 1
                    status, body = answer(count["n"])
                if status == 0:  # drop the connection: what a dying port-forward does
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1/books/b1/also-bought?k=5"

    yield start
    for server in servers:
        server.shutdown()


def run(url: str, tmp_path: Path, *extra: str, stop_after: float | None = None) -> tuple[int, str]:
    stop = tmp_path / "stop"
    if stop_after is not None:
        threading.Timer(stop_after, stop.touch).start()
    done = subprocess.run(
        [
            sys.executable,
            str(POLLER),
            url,
            "--stop-file",
            str(stop),
            "--interval",
            "0.02",
            "--timeout",
            "1",
            "--log",
            str(tmp_path / "poll.log"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout


OK = (200, b'{"recommendations": [{"book_id": "b2"}]}')


def test_every_request_answered_until_the_stop_file_passes(serve: Callable[[Answer], str], tmp_path: Path) -> None:
    code, out = run(serve(lambda n: OK), tmp_path, stop_after=0.5)
    assert code == 0, out
    requests, failed = out.splitlines()[-1].split()[1::2][:2]
    assert int(requests) >= 5 and failed == "0", out


def test_each_failed_request_is_recorded_and_fails_the_poll(serve: Callable[[Answer], str], tmp_path: Path) -> None:
    answers = {3: (500, b"oops"), 4: (200, b"{}"), 5: (200, b"<html>")}
    code, out = run(serve(lambda n: answers.get(n, OK)), tmp_path, stop_after=0.6)
    assert code == 1
    failures = [line for line in out.splitlines() if "FAILED" in line]
    # Request 1 was the warm-up probe: counted requests start after it.
    assert [f.split("FAILED ", 1)[1] for f in failures] == [
        "request 2: HTTP 500",
        "request 3: empty JSON answer",
        "request 4: not JSON: b'<html>'",
    ]
    assert out.splitlines()[-1].split()[3:5] == ["3", "failed"]


def test_a_dropped_connection_is_a_failed_request(serve: Callable[[Answer], str], tmp_path: Path) -> None:
    code, out = run(serve(lambda n: (0, b"") if n in (3, 4) else OK), tmp_path, stop_after=0.5)
    assert code == 1
    failures = [line.split("FAILED ", 1)[1] for line in out.splitlines() if "FAILED" in line]
    assert [f.split(":")[0] for f in failures] == ["request 2", "request 3"]
    assert all("RemoteDisconnected" in f for f in failures), failures


def test_a_service_that_never_answers_fails_after_the_warmup(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # closed again below: nobody listens there
    code, out = run(f"http://127.0.0.1:{dead}/", tmp_path, "--warmup-seconds", "0.2")
    assert code == 2 and "never answered within 0.2s" in out and "Connection refused" in out


def test_reaching_a_bound_before_the_stop_file_fails(serve: Callable[[Answer], str], tmp_path: Path) -> None:
    code, out = run(serve(lambda n: OK), tmp_path, "--max-requests", "3")
    assert code == 1 and "bound reached (3 requests" in out
    code, out = run(serve(lambda n: OK), tmp_path, "--max-seconds", "0.2")
    assert code == 1 and "bound reached" in out


def test_unbounded_polls_are_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(POLLER), "http://127.0.0.1:1/", "--stop-file", str(tmp_path / "s"), "--max-requests", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "must be positive" in done.stderr
