"""The platform and the recommender agree: the rendered Job, CronJob and Deployment containers
run against the real package, with their volume mounts mapped to temporary directories.

A drift between the manifests and the application (a path, port, flag or env name) fails here,
not in a cluster.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mlplatform.capture import Capture

ROOT = Path(__file__).resolve().parent.parent


class Pod:
    """A pod spec's single container, with its volumes as local directories."""

    def __init__(self, manifest: dict[str, Any], claims: dict[str, Path], scratch: Path) -> None:
        spec = manifest["spec"]
        if manifest["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = spec["template"]["spec"]
        (self.container,) = pod["containers"]
        self.paths: dict[str, Path] = {}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in self.container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                local = claims.setdefault(
                    volume["persistentVolumeClaim"]["claimName"], scratch / "claims" / mount["name"]
                )
            else:
                assert "emptyDir" in volume, volume
                local = scratch / manifest["metadata"]["name"] / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            self.paths[mount["mountPath"]] = local

    def local(self, value: str) -> str:
        for mount_path, local in self.paths.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(local) + value[len(mount_path) :]
        return value

    def argv(self, replace: dict[str, str] | None = None) -> list[str]:
        command = self.container["command"]
        # The image runs the package with its own interpreter; here that is this interpreter.
        assert command[0] == "python", command
        args = [self.local(a) for a in self.container["args"]]
        for flag, value in (replace or {}).items():
            args[args.index(flag) + 1] = value
        return [sys.executable, *command[1:], *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
        env.update({e["name"]: self.local(e["value"]) for e in self.container.get("env", [])})
        env.update({"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(self.paths.get("/tmp", ROOT))})
        return env

    def flag(self, name: str) -> str:
        args = self.container["args"]
        return args[args.index(name) + 1]  # type: ignore[no-any-return]


def run(pod: Pod, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pod.argv(), env=pod.env(), cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def versions(registry: Path, cwd: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "recommender", "list", "--registry", str(registry), "--model", "bookstore"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def trained(dev: Capture, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the rendered training Job's container; the registry is the model-store claim."""
    scratch = tmp_path_factory.mktemp("contract")
    claims: dict[str, Path] = {}
    job = Pod(dev.named("bookstore-train-job").manifest(), claims, scratch)
    result = run(job, scratch)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"claims": claims, "scratch": scratch, "job": job}


def test_training_job_produces_a_promoted_model(trained: dict[str, Any]) -> None:
    (registry,) = trained["claims"].values()
    listing = versions(registry, trained["scratch"])
    assert listing["aliases"]["production"] in {v["version"] for v in listing["versions"]}
    assert len(listing["versions"]) == 1


def test_retrain_cronjob_reruns_idempotently(dev: Capture, trained: dict[str, Any]) -> None:
    cron = Pod(dev.named("bookstore-retrain-cronjob").manifest(), trained["claims"], trained["scratch"])
    assert cron.container["args"] == trained["job"].container["args"]
    result = run(cron, trained["scratch"])
    assert result.returncode == 0, result.stderr[-3000:]
    (registry,) = trained["claims"].values()
    # Same data, same parameters: the content-addressed version is the same one, not a second.
    assert len(versions(registry, trained["scratch"])["versions"]) == 1


def test_server_from_the_deployment_answers_its_probes_and_recommends(dev: Capture, trained: dict[str, Any]) -> None:
    pod = Pod(dev.named("bookstore-recommender-deployment").manifest(), trained["claims"], trained["scratch"])
    (port_spec,) = pod.container["ports"]
    assert int(pod.flag("--port")) == port_spec["containerPort"]
    port = free_port()
    # Same command; only the port (free on this machine) and the bind address (loopback) differ.
    argv = pod.argv(replace={"--port": str(port), "--host": "127.0.0.1"})
    server = subprocess.Popen(
        argv, env=pod.env(), cwd=trained["scratch"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def probe(name: str) -> tuple[int, bytes]:
            http = pod.container[name]["httpGet"]
            assert http["port"] == port_spec["name"], f"{name} targets a port the container does not declare"
            return get(base + http["path"])

        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = probe("readinessProbe")
            except (urllib.error.URLError, ConnectionError):
                status = 0
            if status == 200 or time.monotonic() > deadline:
                break
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            time.sleep(0.2)
        assert status == 200
        assert probe("startupProbe")[0] == 200
        assert probe("livenessProbe")[0] == 200
        catalog = trained["job"].paths["/work"] / "data" / "catalog.csv"
        with catalog.open() as f:
            book = next(csv.DictReader(f))["book_id"]
        status, body = get(f"{base}/v1/books/{book}/also-bought?k=5")
        assert status == 200, body
        answer = json.loads(body)
        (registry,) = trained["claims"].values()
        assert answer["book_id"] == book
        assert answer["model_version"] == versions(registry, trained["scratch"])["aliases"]["production"]
        assert 0 < len(answer["recommendations"]) <= 5
    finally:
        server.terminate()
        server.wait(timeout=10)
