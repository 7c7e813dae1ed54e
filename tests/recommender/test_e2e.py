"""End to end as the cluster runs it: `pipeline` then `serve` as real subprocesses on loopback.

The server starts before any model exists (as the serving Deployment may), becomes ready once
the pipeline promotes one, hot-swaps to a new version, refuses a corrupt one, keeps its error
contract, and survives schemathesis fuzzing of its OpenAPI document with no 5xx.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recommender.registry import Registry

PIPELINE = ["--model", "bookstore", "--alias", "production", "--customers", "1500", "--books", "400",
            "--orders", "15000", "--k", "20", "--min-lift", "0.1"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recommender", *args], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    root = tmp_path_factory.mktemp("e2e")
    registry = root / "models"
    port = _free_port()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "recommender", "serve", "--registry", str(registry), "--model", "bookstore",
         "--alias", "production", "--host", "127.0.0.1", "--port", str(port), "--poll-seconds", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, root, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def test_end_to_end(stack: tuple[str, Path, subprocess.Popen[str]]) -> None:
    base, root, server = stack
    registry = root / "models"
    # Before any model: alive, not ready, with a JSON reason.
    _wait(lambda: httpx.get(f"{base}/live").status_code == 200)
    r = httpx.get(f"{base}/ready")
    assert r.status_code == 503 and r.json()["ready"] is False and r.json()["reason"]

    # The training job, twice: the retry must be a no-op.
    args = ["pipeline", "--workdir", str(root / "work"), "--registry", str(registry), *PIPELINE]
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    version = result["version"]
    assert result["created"] and result["promoted"] and result["metrics"]["lift_ndcg"] > 0.1
    retry = _cli(*args)
    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout) | {"metrics": None, "selection": None} == {
        "version": version, "created": False, "promoted": False, "metrics": None, "selection": None}  # fmt: skip
    assert len(Registry(registry).versions("bookstore")) == 1

    _wait(lambda: httpx.get(f"{base}/ready").status_code == 200)
    assert httpx.get(f"{base}/ready").json()["model_version"] == version
    recs = httpx.get(f"{base}/v1/books/b000001/also-bought?k=5").json()
    assert len(recs["recommendations"]) == 5 and recs["model_version"] == version
    basket = httpx.post(f"{base}/v1/recommendations", json={"books": ["b000001", "b000003"]}).json()
    assert len(basket["recommendations"]) == 10

    # Error contract over real HTTP.
    assert httpx.get(f"{base}/v1/books/nope/also-bought").status_code == 404
    assert httpx.get(f"{base}/v1/books/b000001/also-bought?k=-1").status_code == 422
    assert httpx.post(f"{base}/v1/recommendations", content=b"{oops").status_code == 400
    big = b'{"books": ["' + b"x" * (2 << 20) + b'"]}'
    assert httpx.post(f"{base}/v1/recommendations", content=big).status_code == 413

    # Hot swap: a new version (other data), promoted while requests keep flowing.
    swap = _cli("pipeline", "--workdir", str(root / "work2"), "--registry", str(registry), *PIPELINE, "--seed", "8")
    assert swap.returncode == 0, swap.stderr
    new_version = json.loads(swap.stdout)["version"]
    assert new_version != version
    seen = set()
    deadline = time.monotonic() + 20
    while new_version not in seen and time.monotonic() < deadline:
        r = httpx.get(f"{base}/v1/books/b000001/also-bought")
        assert r.status_code == 200  # no dropped or failed request during the swap
        seen.add(r.json()["model_version"])
    assert new_version in seen

    # A corrupt version behind the alias is refused; the current one keeps serving.
    reg = Registry(registry)
    corrupt = "f" * 64
    shutil.copytree(reg.version_dir("bookstore", version), reg.version_dir("bookstore", corrupt))
    alias_file = registry / "bookstore" / "aliases" / "production.json"
    alias_file.write_text(json.dumps({"version": corrupt, "history": [new_version]}))
    _wait(lambda: 'recommender_model_reloads_total{result="failed"} 1.0' in httpx.get(f"{base}/metrics").text)
    assert httpx.get(f"{base}/ready").json()["model_version"] == new_version
    assert httpx.get(f"{base}/v1/books/b000001/also-bought").status_code == 200
    assert _cli("rollback", "--registry", str(registry), "--model", "bookstore").returncode == 0

    # Fuzz the OpenAPI document: no 5xx anywhere.
    fuzz = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json", "--checks",
         "not_a_server_error", "--max-examples", "25", "--seed", "1", "--phases", "examples,coverage,fuzzing",
         "--request-timeout", "5"],
        capture_output=True, text=True, timeout=150, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert fuzz.returncode == 0, fuzz.stdout[-4000:]
    assert re.search(r"Tested: 8\b", fuzz.stdout), fuzz.stdout[-2000:]

    # JSON logs carry the model version.
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=10)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    loaded = [e for e in events if e["msg"] == "model loaded"]
    assert [e["model_version"] for e in loaded][:2] == [version, new_version]
    assert any(e["msg"].startswith("model version refused") and e["refused_version"] == corrupt for e in events)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal as its exit status.
    assert any(e["msg"] == "Application shutdown complete." for e in events)
    assert server.returncode in (0, -signal.SIGTERM)
