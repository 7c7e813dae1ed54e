"""Serving speed of the also-bought lookup, and model load time, on the standard model.

    python benchmarks/bench_serve.py

Trains the standard model (200k customers x 50k books, ~5M purchases), registers it, times
`load_state` (load + checksum + precomputed answers), then runs wrk on loopback: the server
pinned to core 0 (taskset), wrk pinned to core 1, 16 connections, one thread. The anchor is a
minimal Starlette app doing the same lookup from the same loaded model under the same uvicorn
settings, measured in the same run. Needs `wrk` (apt-get install wrk) and taskset.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("/v1/books/b%06d/also-bought?k=10", counter % {n}))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build_registry(root: Path, customers: int, books: int, orders: int) -> tuple[Path, float]:
    from recommender.artifact import write_artifact
    from recommender.datagen import DatasetSpec, generate_arrays
    from recommender.model import ItemKNN
    from recommender.registry import Registry

    customer, book, _ = generate_arrays(DatasetSpec(seed=42, customers=customers, books=books, orders=orders))
    x = sp.csr_matrix((np.ones(customer.size, np.float32), (customer, book)), shape=(customers, books))
    t0 = time.perf_counter()
    model = ItemKNN(K=20).fit(x)
    fit = time.perf_counter() - t0
    art = root / "artifact"
    write_artifact(art, model, np.array([f"b{i:06d}" for i in range(books)]), {"dataset_sha256": "bench"})
    reg = Registry(root / "models")
    version, _ = reg.register("bench", art)
    reg.promote("bench", version)
    return reg.version_dir("bench", version), fit


def _anchor_app(version_dir: Path) -> None:
    """Child mode: a minimal Starlette app with the same lookup, under the same uvicorn settings."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from recommender.serving import load_state

    state = load_state(version_dir, version_dir.name)

    async def also_bought(request: Request) -> Response:
        try:
            k = int(request.query_params.get("k", "10"))
        except ValueError:
            return JSONResponse({"error": "bad k"}, status_code=422)
        body = state.also_bought_body(request.path_params["book_id"], k)
        if body is None:
            return JSONResponse({"error": "unknown book"}, status_code=404)
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/v1/books/{book_id}/also-bought", also_bought),
                            Route("/ready", lambda r: JSONResponse({"ready": True}))])  # fmt: skip
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), loop="uvloop", http="httptools",
                access_log=False, log_level="warning")  # fmt: skip


def _wrk(url: str, lua: Path, seconds: int, connections: int) -> dict[str, float]:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    lat = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.MULTILINE)
        lat[f"p{pct}_ms"] = float(m.group(1)) * unit[m.group(2)] if m else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": rps, **lat, "non_2xx": int(errors.group(1)) if errors else 0}


def _serve_and_measure(cmd: list[str], port: int, env: dict[str, str], lua: Path, args: argparse.Namespace) -> dict:
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"server did not become ready: {cmd}")
        url = f"http://127.0.0.1:{port}"
        _wrk(url, lua, 2, args.connections)  # warm-up
        runs = [_wrk(url, lua, args.seconds, args.connections) for _ in range(args.repeats)]
        return {
            "requests_per_s_median": statistics.median(r["requests_per_s"] for r in runs),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "runs": runs,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument("--books", type=int, default=50_000)
    p.add_argument("--orders", type=int, default=5_600_000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--anchor-app", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.anchor_app:
        _anchor_app(args.anchor_app)
        return
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} not found (apt-get install wrk util-linux)")

    from recommender.serving import load_state

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    version_dir, fit = _build_registry(work, args.customers, args.books, args.orders)
    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        load_state(version_dir, version_dir.name)
        loads.append(time.perf_counter() - t0)
    print(f"model: {args.books} books, fit {fit:.2f}s, load+verify+precompute {statistics.median(loads):.2f}s",
          flush=True)  # fmt: skip
    lua = work / "lookup.lua"
    lua.write_text(LUA.replace("{n}", str(args.books)))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    results = {}
    port = _free_port()
    ours_cmd = [sys.executable, "-m", "recommender", "serve", "--registry", str(work / "models"), "--model", "bench",
                "--port", str(port)]  # fmt: skip
    results["ours"] = _serve_and_measure(ours_cmd, port, {**env, "PYTHONPATH": str(ROOT)}, lua, args)
    ours = results["ours"]
    print(f"  ours      {ours['requests_per_s_median']:.0f} req/s p99 {ours['p99_ms_median']:.2f} ms", flush=True)
    port = _free_port()
    anchor_cmd = [sys.executable, __file__, "--anchor-app", str(version_dir)]
    results["starlette"] = _serve_and_measure(anchor_cmd, port, {**env, "BENCH_PORT": str(port)}, lua, args)
    print(f"  starlette {results['starlette']['requests_per_s_median']:.0f} req/s "
          f"p99 {results['starlette']['p99_ms_median']:.2f} ms", flush=True)  # fmt: skip
    result = {
        "model": {"books": args.books, "fit_seconds": fit, "load_seconds_median": statistics.median(loads)},
        "wrk": {"connections": args.connections, "threads": 1, "seconds": args.seconds, "repeats": args.repeats,
                "server_core": 0, "wrk_core": 1},
        **results,
        "ratio_ours_over_starlette": results["ours"]["requests_per_s_median"]
        / results["starlette"]["requests_per_s_median"],
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
