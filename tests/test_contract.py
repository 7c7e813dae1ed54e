"""The platform and the recommender agree: the rendered training runs and the Deployment's
container run against the real package as plain processes, as their pods would run them
(``tests/podrun.py``: the environment the kubelet resolves, ``$(VAR)`` expanded in the args), with
their volumes mapped to temporary directories (a claim shared by every pod, an emptyDir per pod).

- The dev stack's JobSet: ``prepare``, then the ``workers`` (one process per completion index)
  and ``finish`` together, promote the very version the one-worker Job promotes on the same data
  and parameters: the merged model is the single-process one, byte for byte.
- A worker killed mid-run, and the whole set run again as JobSet's restart would: only the
  missing shard is computed again, and the result is still that version.
- With one worker the stack renders a batch Job and a plain CronJob: they run as before.

A drift between the manifests and the application (a path, port, flag, env name or a ``$(VAR)``
nobody sets) fails here, not in a cluster.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mlplatform.capture import Capture, capture_stack
from mlplatform.config import RecommenderConfig
from tests.k8s_env import JOBSET_NAME_LABEL, jobset_steps
from tests.podrun import ContainerRun, container_run, find_workload

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bookstore"
STEP_TIMEOUT_SECONDS = 300  # far above what a step takes here (seconds): only a hang reaches it


class LocalPod:
    """A pod's container as a local process: each volume a directory, a claim shared by every pod
    naming it (``claims``), an emptyDir the pod's own."""

    def __init__(self, run: ContainerRun, claims: dict[str, Path], scratch: Path, pod: str) -> None:
        self.run, self.name, self.scratch = run, pod, scratch
        self.paths: dict[str, Path] = {}
        for volume in run.volumes:
            assert volume.config_map is None, f"{pod}: ConfigMap volume {volume.name} has no content here"
            if volume.claim is not None:
                local = claims.setdefault(volume.claim, scratch / "claims" / volume.claim)
            else:
                local = scratch / "pods" / pod / volume.name
            local.mkdir(parents=True, exist_ok=True)
            self.paths[volume.mount_path] = local
        self.logs = scratch / "logs" / pod
        self.process: subprocess.Popen[bytes] | None = None

    def local(self, value: str) -> str:
        for mount_path, local in self.paths.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(local) + value[len(mount_path) :]
        return value

    def argv(self, replace: Mapping[str, str] | None = None) -> list[str]:
        command = list(self.run.command or ())
        # The image runs the package with its own interpreter; here that is this interpreter.
        assert command[:1] == ["python"], command
        args = [self.local(a) for a in self.run.args or ()]
        for flag, value in (replace or {}).items():
            args[args.index(flag) + 1] = value
        return [sys.executable, *command[1:], *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
        env.update({name: self.local(value) for name, value in self.run.env.items()})
        home = str(self.paths.get("/tmp", self.scratch))
        env.update({"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "HOME": home})
        return env

    def start(self) -> subprocess.Popen[bytes]:
        """Start the container's process; its output goes to files (pods run side by side)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "stdout").open("wb") as out, (self.logs / "stderr").open("wb") as err:
            self.process = subprocess.Popen(
                self.argv(), env=self.env(), cwd=self.scratch, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        return self.process

    def wait(self, timeout: float = STEP_TIMEOUT_SECONDS) -> int:
        assert self.process is not None, f"{self.name} was never started"
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"{self.name} still running after {timeout} s:\n{self.stderr()[-3000:]}") from None

    def stdout(self) -> str:
        return (self.logs / "stdout").read_text()

    def stderr(self) -> str:
        return (self.logs / "stderr").read_text()

    def succeeded(self) -> None:
        code = self.wait()
        assert code == 0, f"{self.name} exited {code}:\n{self.stderr()[-3000:]}"


def run(pod: LocalPod) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pod.argv(), env=pod.env(), cwd=pod.scratch, capture_output=True, text=True, timeout=600, check=False
    )


class JobSetAttempt:
    """One attempt of a JobSet, run as its controller runs it: each replicated job's pods start
    once the one it depends on is Complete (every pod exited 0) or Ready (its pods are running:
    these pods have no readiness probe). ``restarts`` is the attempt's number: a restart recreates
    every Job (fresh pods and emptyDirs) under the same JobSet name, so the run directory stays."""

    def __init__(self, jobset: Mapping[str, Any], claims: dict[str, Path], scratch: Path, restarts: int = 0) -> None:
        self.jobset, self.claims, self.scratch, self.restarts = jobset, claims, scratch, restarts
        self.pods: dict[str, list[LocalPod]] = {}

    def start(self) -> None:
        for template, step in enumerate(jobset_steps(self.jobset)):
            if step.after_status == "Complete":
                assert step.after is not None
                for pod in self.pods[step.after]:
                    pod.succeeded()
            elif step.after_status is not None:
                assert step.after_status == "Ready", step
            self.pods[step.name] = []
            for index in range(step.pods):
                run_ = container_run(
                    self.jobset, template=template, index=index if step.indexed else 0, restarts=self.restarts
                )
                pod = LocalPod(run_, self.claims, self.scratch, f"{step.name}-{index}-attempt{self.restarts}")
                pod.start()
                self.pods[step.name].append(pod)

    def wait(self) -> None:
        for pods in self.pods.values():
            for pod in pods:
                pod.succeeded()

    def running(self) -> list[subprocess.Popen[bytes]]:
        return [p.process for ps in self.pods.values() for p in ps if p.process and p.process.poll() is None]

    def delete(self) -> None:
        """What a restart does to the pods still running: their Jobs are deleted, they get SIGTERM."""
        for process in self.running():
            process.terminate()
            process.wait(timeout=30)  # the grace period

    def __enter__(self) -> JobSetAttempt:
        return self

    def __exit__(self, *exc: object) -> None:
        # A failed assertion must not leave a finish step waiting for shards (or a stopped worker).
        for process in self.running():
            process.kill()
            process.wait()


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
        [sys.executable, "-m", "recommender", "list", "--registry", str(registry), "--model", MODEL],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listing: dict[str, Any] = json.loads(out.stdout)
    return listing


def promoted(registry: Path, cwd: Path) -> tuple[str, bytes]:
    """The version the production alias points at (the only one registered), and its model bytes."""
    listing = versions(registry, cwd)
    version = listing["aliases"]["production"]
    assert [v["version"] for v in listing["versions"]] == [version], listing["versions"]
    return version, (registry / MODEL / "versions" / version / "model.npz").read_bytes()


def training(capture: Capture, kind: str, name: str = "bookstore-train") -> dict[str, Any]:
    return dict(find_workload(capture.kubernetes_objects(), kind=kind, name=name, component="training"))


@pytest.fixture(scope="module")
def trained(dev_one_worker: Capture, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The one-worker Job's container (single-process training); the registry is the model-store claim."""
    scratch = tmp_path_factory.mktemp("contract")
    claims: dict[str, Path] = {}
    job = LocalPod(container_run(training(dev_one_worker, "Job")), claims, scratch, "train")
    result = run(job)
    assert result.returncode == 0, result.stderr[-3000:]
    (registry,) = claims.values()
    version, model = promoted(registry, scratch)
    return {"claims": claims, "scratch": scratch, "job": job, "version": version, "model": model}


def test_training_job_produces_a_promoted_model(trained: dict[str, Any]) -> None:
    (registry,) = trained["claims"].values()
    listing = versions(registry, trained["scratch"])
    assert listing["aliases"]["production"] in {v["version"] for v in listing["versions"]}
    assert len(listing["versions"]) == 1


def test_retrain_cronjob_reruns_idempotently(dev_one_worker: Capture, trained: dict[str, Any]) -> None:
    cron_run = container_run(training(dev_one_worker, "CronJob", "bookstore-retrain"))
    cron = LocalPod(cron_run, trained["claims"], trained["scratch"], "retrain")
    assert cron.run.args == trained["job"].run.args
    result = run(cron)
    assert result.returncode == 0, result.stderr[-3000:]
    (registry,) = trained["claims"].values()
    # Same data, same parameters: the content-addressed version is the same one, not a second.
    assert len(versions(registry, trained["scratch"])["versions"]) == 1


@pytest.fixture(scope="module")
def jobset(dev: Capture) -> dict[str, Any]:
    manifest = training(dev, "JobSet")
    assert [s.name for s in jobset_steps(manifest)] == ["prepare", "workers", "finish"]
    return manifest


def test_the_jobset_promotes_the_model_single_process_training_promotes(
    jobset: dict[str, Any], trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    scratch = tmp_path_factory.mktemp("jobset")
    claims: dict[str, Path] = {}
    with JobSetAttempt(jobset, claims, scratch) as attempt:
        attempt.start()
        attempt.wait()

    name = jobset["metadata"]["name"]
    for pods in attempt.pods.values():
        for pod in pods:
            # RUN_NAME is the JobSet's name, read from its pods' label, and no $(VAR) is left over.
            assert pod.run.pod_labels[JOBSET_NAME_LABEL] == pod.run.env["RUN_NAME"] == name
            assert not [a for a in pod.run.args or () if "$(" in a], pod.run.args
    (registry,) = claims.values()
    # The run's shared scratch (data and shards) was used, then removed once the model was promoted.
    assert (registry / ".runs").is_dir() and not (registry / ".runs" / name).exists()
    shards = [json.loads(w.stdout()) for w in attempt.pods["workers"]]
    assert [(s["shard"], s["computed"]) for s in shards] == [("0/2", True), ("1/2", True)]
    version, model = promoted(registry, scratch)
    assert version == trained["version"]
    assert model == trained["model"]
    # The stack's EASE budget reached the workers and finish: the platform's 5,000 books fit it,
    # so EASE competed in the selection recorded with the version.
    selection = json.loads((registry / MODEL / "versions" / version / "metadata.json").read_text())["selection"]
    assert selection["ease"]["memory_budget_mib"] == RecommenderConfig().ease_memory_mib == 1024
    assert selection["ease"]["included"] is True
    assert any(row["similarity"] == "ease" for row in selection["candidates"])


def test_the_ease_budget_is_one_flag_the_workers_and_finish_agree_on() -> None:
    """recommenderEaseMemory goes to every step that plans shards, as --ease-memory-mib in MiB; the
    recommender's own parser turns each step's args into the same plan, with that budget."""
    from recommender.cli import _plan, build_parser
    from recommender.ease import ease_skip_reason

    capture = capture_stack("dev", {"recommenderEaseMemory": "256Mi"})
    manifest = training(capture, "JobSet")
    plans = []
    for template, step in enumerate(jobset_steps(manifest)):
        if step.name == "prepare":
            continue
        args = list(container_run(manifest, template=template).args or ())
        assert args[args.index("--ease-memory-mib") + 1] == "256", (step.name, args)
        plans.append(_plan(build_parser().parse_args(args)))
    assert len(plans) == 2 and plans[0] == plans[1] and plans[0].ease_memory_mib == 256
    # At 256 MiB the platform's 5,000 books (16·5000² bytes = 381 MiB) skip EASE; 1Gi fits them.
    assert ease_skip_reason(5_000, 256) is not None and ease_skip_reason(5_000, 1024) is None
    one_worker = capture_stack("dev", {"recommenderEaseMemory": "512Mi", "recommenderTrainingWorkers": 1})
    args = list(container_run(training(one_worker, "Job")).args or ())
    assert build_parser().parse_args(args).ease_memory_mib == 512


def wait_for_output(pod: LocalPod, timeout: float = 60) -> str:
    """The pod's first line on stderr: it has started computing (and has not exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pod.stderr()
        if "\n" in text:
            return text.splitlines()[0]
        assert pod.process is not None and pod.process.poll() is None, f"{pod.name} exited:\n{text[-3000:]}"
        time.sleep(0.005)
    raise AssertionError(f"{pod.name} printed nothing in {timeout} s")


def test_a_worker_killed_mid_run_is_resumed_not_recomputed(
    jobset: dict[str, Any], trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    scratch = tmp_path_factory.mktemp("jobset-killed")
    claims: dict[str, Path] = {}
    with JobSetAttempt(jobset, claims, scratch) as first:
        first.start()
        survivor, victim = first.pods["workers"]
        # Freeze worker 1 as soon as it reports progress, let worker 0 finish, then kill worker 1:
        # a worker lost mid-run (an OOM kill, a node gone) while the other has written its shard.
        wait_for_output(victim)
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGSTOP)
        shards = Path(victim.local(victim.run.flag("--shards-dir")))
        assert not list(shards.glob("shard-0001-of-0002-*.npz")), "worker 1 wrote its shard before it was stopped"
        survivor.succeeded()
        victim.process.kill()
        assert victim.wait() == -signal.SIGKILL
        # The failed worker Job fails the set; JobSet restarts it: every Job deleted, then recreated.
        first.delete()
        (finish,) = first.pods["finish"]
        assert finish.wait() == -signal.SIGTERM, "finish ended before the restart deleted it"
    assert [p.name[:18] for p in shards.glob("shard-*.npz")] == ["shard-0000-of-0002"]

    with JobSetAttempt(jobset, claims, scratch, restarts=1) as second:
        second.start()
        second.wait()
    computed = [json.loads(w.stdout()) for w in second.pods["workers"]]
    assert [(s["shard"], s["computed"]) for s in computed] == [("0/2", False), ("1/2", True)]
    (registry,) = claims.values()
    version, model = promoted(registry, scratch)
    assert (version, model) == (trained["version"], trained["model"])


def test_server_from_the_deployment_answers_its_probes_and_recommends(dev: Capture, trained: dict[str, Any]) -> None:
    deployment = find_workload(
        dev.kubernetes_objects(), kind="Deployment", name="bookstore-recommender", component="inference"
    )
    pod = LocalPod(container_run(deployment), trained["claims"], trained["scratch"], "serve")
    probes = {p.name: p for p in pod.run.probes}  # each probe's port is one the container declares
    assert set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}
    assert int(pod.run.flag("--port")) in pod.run.ports.values()
    assert {p.container_port for p in probes.values()} == {int(pod.run.flag("--port"))}
    port = free_port()
    # Same command; only the port (free on this machine) and the bind address (loopback) differ.
    argv = pod.argv(replace={"--port": str(port), "--host": "127.0.0.1"})
    server = subprocess.Popen(
        argv, env=pod.env(), cwd=trained["scratch"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def probe(name: str) -> tuple[int, bytes]:
            return get(base + probes[name].path)

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
        catalog = Path(trained["job"].paths["/work"]) / "data" / "catalog.csv"
        with catalog.open() as f:
            book = next(csv.DictReader(f))["book_id"]
        status, body = get(f"{base}/v1/books/{book}/also-bought?k=5")
        assert status == 200, body
        answer = json.loads(body)
        assert answer["book_id"] == book
        assert answer["model_version"] == trained["version"]
        assert 0 < len(answer["recommendations"]) <= 5
    finally:
        server.terminate()
        server.wait(timeout=10)
