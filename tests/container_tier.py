"""The real-container tier: the recommender image, built and run as the rendered pods run it.

``scripts/container-test.sh`` prepares a Docker engine and the base images, then runs
``python -m tests.container_tier``. This renders the dev stack, builds ``recommender/Dockerfile``
and runs containers from the manifests (``tests/podrun.py``) as their pods run them: the pod's
user and groups, read-only root filesystem, dropped capabilities, no privilege escalation,
memory and CPU limits, volumes as host directories owned as ``fsGroup`` makes them, no network
for training, the server's port on the host's loopback only, the environment the kubelet
resolves and ``$(VAR)`` expanded in the args.

- The dev stack's training JobSet: ``prepare``, then its two ``workers`` (each with its
  completion index) and ``finish`` side by side, sharing the model-store claim; it must promote
  the very version the one-worker Job promotes.
- The same stack with one worker (``recommenderTrainingWorkers=1``): its training Job, then its
  retraining CronJob (a no-op re-run).
- The Deployment, serving what the JobSet promoted.
- The retraining launcher (the CronJob that creates a JobSet through the API server) cannot
  run without an API server: its pod's identity and security settings are checked as written.

It also asserts facts about the image itself. Exit 0 when all hold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplatform.capture import capture_stack
from tests.k8s_env import JOBSET_NAME_LABEL, Step, jobset_steps
from tests.podrun import (
    ContainerRun,
    UnsupportedError,
    Volume,
    container_run,
    docker_args,
    find_workload,
    identity_args,
    run_as_non_root_error,
)
from workloads.image import content_tag

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = ROOT / "recommender"
DOCKERFILE = CONTEXT / "Dockerfile"
CI_PREFIX = "ml-platform-ci/"  # never the name `pulumi up` loads into kind: a stand-in build must not pass for it
# The size target holds for the image on the official base. That base cannot be pulled here, so
# its size is an estimate: debian:bookworm-slim (~75 MB) plus CPython and pip in /usr/local
# (~55 MB). The stand-in base is reported next to it; what the Dockerfile adds is measured.
OFFICIAL_BASE_BYTES = 130_000_000
SIZE_TARGET_BYTES = 300_000_000
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "clang++", "tcc", "x86_64-linux-gnu-gcc")
STARTUP_CAP_SECONDS = 120  # the manifest may allow longer; the tier's time budget does not
JOB_CAP_SECONDS = 900
CONTAINER_PREFIX = "ml-platform-ci-"
ONE_WORKER = {"recommenderTrainingWorkers": 1}


class TierError(Exception):
    """A check that failed; the tier stops at the first one."""


def log(message: str) -> None:
    print(message, flush=True)


def docker(*args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        raise TierError(f"docker {' '.join(args[:3])} ... still running after {timeout:.0f} s") from err
    if check and result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-40:])
        raise TierError(f"docker {' '.join(args[:3])} ... exited {result.returncode}:\n{tail}")
    return result.stdout.strip()


def check(ok: bool, what: str, detail: str = "") -> None:
    if not ok:
        raise TierError(f"expected: {what}; found: {detail or 'otherwise'}")
    log(f"  ok  {what}{' (' + detail + ')' if detail else ''}")


def mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


# ---------------------------------------------------------------------------------------- build


def build(image: str, base: str | None, builder: str | None) -> float:
    """Build recommender/Dockerfile as ``image``; with ``base``, on it and without network."""
    args = ["build", "--tag", image, "--file", str(DOCKERFILE)]
    env = None
    if base:
        # The legacy builder: BuildKit would fetch the `# syntax=` frontend from Docker Hub.
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        args += [
            "--network",
            "none",
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "--build-arg",
            f"BUILD_IMAGE={builder or base}",
        ]
    started = time.monotonic()
    docker(*args, str(CONTEXT), timeout=900, env=env)
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------- image facts

_WRITABLE = r"""
import json, os, sys
root_dev, found = os.stat("/").st_dev, []
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == root_dev]  # like find -xdev
    for name in [*dirs, *files]:
        path = os.path.join(top, name)
        if not os.path.islink(path) and os.access(path, os.W_OK):
            found.append(path)
if os.access("/", os.W_OK):
    found.append("/")
print(json.dumps(found))
"""

_COMPILERS = r"""
import glob, json, os, shutil, sys
path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
found = {shutil.which(name, path=path) for name in sys.argv[1:]} - {None}
for d in filter(None, path.split(":")):
    found |= set(glob.glob(os.path.join(d, "*-gcc*")) + glob.glob(os.path.join(d, "gcc-*")))
print(json.dumps(sorted(found)))
"""


def _python_in(image: str, script: str, *argv: str, user_args: Sequence[str] = ()) -> Any:
    out = docker(
        "run", "--rm", "--pull", "never", "--network", "none", "--cap-drop", "ALL", "--security-opt",
        "no-new-privileges", *user_args, "--entrypoint", "python", image, "-c", script, *argv, timeout=120,
    )  # fmt: skip
    return json.loads(out.splitlines()[-1])


def image_facts(image: str, base: str, runs: Sequence[ContainerRun], stand_in: bool) -> dict[str, Any]:
    log(f"== image facts: {image}")
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image))
    user = config.get("User") or ""
    uid, _, gid = user.partition(":")
    check(uid.isdigit() and int(uid) != 0, "the image's USER is a numeric non-root UID", f"USER {user or '(root)'}")
    for run in runs:
        check(
            int(uid) == run.run_as_user and (not gid or run.run_as_group is None or int(gid) == run.run_as_group),
            f"the image's USER matches {run.title}'s runAsUser/runAsGroup",
            f"{user} vs {run.run_as_user}:{run.run_as_group}",
        )
        for subject, as_run in (("pod", run), ("pod without runAsUser", dataclasses.replace(run, run_as_user=None))):
            refusal = run_as_non_root_error(as_run, user)
            check(refusal is None, f"a kubelet would start {run.title} ({subject})", refusal or "")
    ids = _python_in(image, "import json, os; print(json.dumps([os.getuid(), os.getgid()]))")
    check(ids[0] == int(uid), "a container of the image runs as that UID by default", f"uid {ids[0]}, gid {ids[1]}")

    # Checked without --read-only, as each distinct pod user: the image's own permissions,
    # should a pod ever run without the flag.
    declared = sorted({v.mount_path for run in runs for v in run.volumes})
    for as_pod in sorted({tuple(identity_args(run)) for run in runs}):
        writable = [
            p
            for p in _python_in(image, _WRITABLE, user_args=as_pod)
            if not any(p == m or p.startswith(m.rstrip("/") + "/") for m in declared)
        ]
        check(
            not writable,
            f"{' '.join(as_pod) or 'the image user'} can write nothing in the image outside {', '.join(declared)}",
            ", ".join(writable),
        )
        compilers = _python_in(image, _COMPILERS, *COMPILERS, user_args=as_pod)
        check(
            not compilers, "no compiler in the final stage", ", ".join(compilers) or f"none of {', '.join(COMPILERS)}"
        )

    size = int(docker("image", "inspect", "--format", "{{.Size}}", image))
    if stand_in:
        base_size = int(docker("image", "inspect", "--format", "{{.Size}}", base))
        added, estimate = size - base_size, OFFICIAL_BASE_BYTES + size - base_size
        log(f"  --  size: {mb(size)} = Debian stand-in base {mb(base_size)} + {mb(added)} added")
        found = f"estimated {mb(estimate)} = ~{mb(OFFICIAL_BASE_BYTES)} + {mb(added)}"
    else:
        # The base may not be in the image store under its reference (BuildKit): total only.
        inspected = docker("image", "inspect", "--format", "{{.Size}}", base, check=False)
        base_size = int(inspected) if inspected.isdigit() else 0
        added, estimate = size - base_size, size
        found = mb(size)
    check(estimate < SIZE_TARGET_BYTES, f"the image on the official base is under {mb(SIZE_TARGET_BYTES)}", found)
    return {"size": size, "base": base_size, "added": added, "estimate": estimate}


# ---------------------------------------------------------------------------------------- pods


class Pods:
    """Host directories for the pods' volumes: one per claim (shared), one per pod's emptyDir."""

    def __init__(self, scratch: Path, image: str) -> None:
        self.scratch, self.image = scratch, image
        self.claims: dict[str, Path] = {}
        self.names: list[str] = []
        self.root = os.geteuid() == 0

    def _directory(self, path: Path, fs_group: int | None, empty_dir: bool) -> Path:
        path.mkdir(parents=True)
        if fs_group is not None and self.root:
            # What the kubelet's fsGroup handling leaves: group fsGroup, group rwx, setgid. An
            # emptyDir starts 0777; a fresh volume's root 0755.
            os.chown(path, 0, fs_group)
            path.chmod(0o2777 if empty_dir else 0o2775)
        else:
            path.chmod(0o777 if empty_dir or fs_group is not None else 0o755)
        return path

    def host_paths(self, run: ContainerRun, pod: str) -> dict[str, Path]:
        paths = {}
        for v in run.volumes:
            if v.memory:
                continue
            if v.claim is not None:
                if v.claim not in self.claims:
                    self.claims[v.claim] = self._directory(self.scratch / "claims" / v.claim, run.fs_group, False)
                paths[v.name] = self.claims[v.claim]
            else:
                paths[v.name] = self._directory(self.scratch / "pods" / pod / v.name, run.fs_group, True)
        return paths

    def argv(self, run: ContainerRun, pod: str, paths: dict[str, Path], publish: bool = False) -> list[str]:
        name = f"{CONTAINER_PREFIX}{os.getpid()}-{pod}"
        self.names.append(name)
        return docker_args(run, image=self.image, name=name, host_paths=paths, publish=publish)

    def remove_all(self) -> None:
        for name in self.names:
            docker("rm", "--force", name, check=False, timeout=60)


def used_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def check_size_limits(run: ContainerRun, paths: dict[str, Path], pod: str) -> None:
    # The kubelet evicts a pod whose emptyDir outgrows its sizeLimit.
    for v in run.volumes:
        if v.claim is None and not v.memory and v.size_limit_bytes is not None:
            used = used_bytes(paths[v.name])
            check(
                used <= v.size_limit_bytes,
                f"{pod}: emptyDir {v.name} within its sizeLimit",
                f"{mb(used)} of {mb(v.size_limit_bytes)}",
            )


def registry_listing(registry: Path, model: str) -> dict[str, Any]:
    # Read on the host: root sees the files whatever the pods made their modes.
    out = subprocess.run(
        [sys.executable, "-m", "recommender", "list", "--registry", str(registry), "--model", model],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise TierError(f"recommender list --registry {registry} exited {out.returncode}: {out.stderr.strip()[-500:]}")
    listing: dict[str, Any] = json.loads(out.stdout)
    return listing


def claim_of(run: ContainerRun, pods: Pods, flag: str) -> Path:
    """The host directory behind the path the container gets as ``flag``."""
    volume: Volume = run.volume_at(run.flag(flag))
    if volume.claim is None:
        raise TierError(f"{run.workload}: {flag} {run.flag(flag)} is not on a claim")
    return pods.claims[volume.claim] / run.flag(flag)[len(volume.mount_path) :].lstrip("/")


@dataclass
class Started:
    """A pod's container running in the background (``docker run`` attached, output to files)."""

    pod: str
    run: ContainerRun
    paths: dict[str, Path]
    process: subprocess.Popen[bytes]
    started: float
    logs: Path

    def output(self, stream: str) -> str:
        return (self.logs / stream).read_text(errors="replace")


def start(run: ContainerRun, pods: Pods, pod: str) -> Started:
    paths = pods.host_paths(run, pod)
    argv = pods.argv(run, pod, paths)
    logs = pods.scratch / "logs" / pod
    logs.mkdir(parents=True)
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        process = subprocess.Popen(["docker", *argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    return Started(pod, run, paths, process, time.monotonic(), logs)


def complete(started: Started) -> float:
    """Wait for the container to exit 0 within its deadline (or the tier's cap); seconds it ran."""
    run, pod = started.run, started.pod
    timeout = min(run.deadline_seconds or JOB_CAP_SECONDS, JOB_CAP_SECONDS)
    remaining = started.started + timeout - time.monotonic()
    try:
        code = started.process.wait(timeout=max(remaining, 0.1))
    except subprocess.TimeoutExpired as err:
        started.process.kill()
        raise TierError(f"{pod}: still running after {timeout} s (activeDeadlineSeconds or the tier's cap)") from err
    elapsed = time.monotonic() - started.started
    if code != 0:
        tail = "\n".join(started.output("stderr").strip().splitlines()[-30:])
        raise TierError(f"{pod}: the container exited {code}:\n{tail}")
    check(True, f"{pod}: {run.title}'s container exited 0", f"{elapsed:.1f} s, network {run.network}")
    check_size_limits(run, started.paths, pod)
    return elapsed


def run_to_completion(run: ContainerRun, pods: Pods, pod: str) -> tuple[dict[str, Path], float]:
    started = start(run, pods, pod)
    return started.paths, complete(started)


def jobset_runs(jobset: Mapping[str, Any]) -> list[tuple[Step, list[ContainerRun]]]:
    """Each replicated job, in order, with its pods' containers (an Indexed Job's: one per index)."""
    return [
        (step, [container_run(jobset, template=t, index=i if step.indexed else 0) for i in range(step.pods)])
        for t, step in enumerate(jobset_steps(jobset))
    ]


def run_jobset(name: str, steps: list[tuple[Step, list[ContainerRun]]], pods: Pods) -> dict[str, list[Started]]:
    """Run the set as its controller does: a replicated job's pods start once the one it depends
    on is Complete (every pod exited 0) or Ready (its pods are running: they have no readiness
    probe). Every pod gets the JobSet's name in RUN_NAME and its args expanded from it."""
    started: dict[str, list[Started]] = {}
    completed: set[str] = set()
    for step, runs in steps:
        if step.after_status == "Complete" and step.after is not None:
            for earlier in started[step.after]:
                complete(earlier)
            completed.add(step.after)
        elif step.after_status not in (None, "Ready"):
            raise TierError(f"JobSet {name}: {step.name} depends on {step.after} being {step.after_status}")
        started[step.name] = [start(run, pods, f"jobset-{step.name}-{i}") for i, run in enumerate(runs)]
    for step, _ in steps:
        if step.name not in completed:
            for pod in started[step.name]:
                complete(pod)
    return started


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def serve(run: ContainerRun, pods: Pods, book: str, production: str) -> float:
    pod = "serve"
    paths = pods.host_paths(run, pod)
    argv = pods.argv(run, pod, paths, publish=True)
    name = argv[argv.index("--name") + 1]
    docker(argv[0], "--detach", *argv[1:], timeout=60)
    started = time.monotonic()

    def logs() -> str:
        return "\n".join(docker("logs", "--tail", "30", name, check=False).splitlines()[-30:])

    def base_url(container_port: int) -> str:
        # "127.0.0.1:49153" (and "[::1]:49153" where IPv6 is on): take the IPv4 one.
        lines = docker("port", name, f"{container_port}/tcp").splitlines()
        address = next(line for line in lines if line.startswith("127.0.0.1:"))
        return f"http://{address}"

    probes = {p.name: p for p in run.probes}
    check(
        {"startupProbe", "readinessProbe", "livenessProbe"} <= set(probes),
        f"{pod}: the Deployment declares all three probes",
    )
    startup = probes["startupProbe"]
    deadline = started + min(startup.budget_seconds, STARTUP_CAP_SECONDS)
    status = 0
    while time.monotonic() < deadline:
        if docker("inspect", "--format", "{{.State.Running}}", name) != "true":
            raise TierError(f"{pod}: the server's container exited before its startupProbe passed:\n{logs()}")
        status, _ = http_get(base_url(startup.container_port) + startup.path, startup.timeout_seconds)
        if status == 200:
            break
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    if status != 200:
        raise TierError(f"{pod}: startupProbe {startup.path} never answered 200 (last {status}):\n{logs()}")
    check(
        True,
        f"{pod}: startupProbe GET {startup.path} on port {startup.container_port} answered 200",
        f"after {elapsed:.1f} s",
    )
    for name_ in ("readinessProbe", "livenessProbe"):
        probe = probes[name_]
        status, body = http_get(base_url(probe.container_port) + probe.path, probe.timeout_seconds)
        check(
            status == 200, f"{pod}: {name_} GET {probe.path} on port {probe.container_port} answered 200", f"{status}"
        )

    port = next(iter(sorted(set(run.ports.values()))))
    status, body = http_get(f"{base_url(port)}/v1/books/{book}/also-bought?k=5", 10)
    check(status == 200, f"{pod}: GET /v1/books/{book}/also-bought answered 200", f"{status} {body[:200]!r}")
    answer = json.loads(body)
    check(
        answer.get("model_version") == production,
        f"{pod}: served by the promoted version",
        str(answer.get("model_version")),
    )
    check(
        0 < len(answer.get("recommendations", [])) <= 5,
        f"{pod}: 1 to 5 recommendations",
        str(len(answer.get("recommendations", []))),
    )
    check_size_limits(run, paths, pod)
    return elapsed


@contextmanager
def scratch_directory(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ml-platform-ci."))
    try:
        yield path
    finally:
        if keep:
            log(f"  --  kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def check_launcher(launcher: ContainerRun, objects: Sequence[Mapping[str, Any]], training: ContainerRun) -> None:
    """The launcher's pod as written: it needs an API server to run (kubectl create), so it is not."""
    log(f"== {launcher.title}: not run, it creates a JobSet through the API server and there is none here")
    try:
        docker_args(launcher, image=launcher.image, name="launcher", host_paths={})
    except UnsupportedError as err:
        check(True, "the tier refuses to run it", str(err))
    else:
        raise TierError(f"{launcher.title}: the tier would run a pod that needs an API server")
    tag = launcher.image.rsplit("/", 1)[-1].partition(":")[2]
    check(bool(tag) and tag != "latest", "its image is pinned to a tag", launcher.image)
    refusal = run_as_non_root_error(launcher, "")  # whatever the image's USER
    check(refusal is None, "a kubelet would start it as non-root whatever the image's USER", refusal or "")
    check(
        identity_args(launcher) == identity_args(training),
        "it runs as the training pods' user and groups",
        " ".join(identity_args(launcher)),
    )
    check(
        launcher.read_only_root and launcher.no_new_privileges and launcher.cap_drop == ("ALL",)
        and not launcher.cap_add and launcher.seccomp == "RuntimeDefault",
        "read-only root, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp",
    )  # fmt: skip
    check(
        launcher.memory_limit_bytes is not None and launcher.cpu_limit is not None,
        "memory and CPU limits",
        f"{launcher.memory_limit_bytes} B, {launcher.cpu_limit} CPU",
    )
    writable = [v for v in launcher.volumes if not v.read_only]
    check(
        all(v.claim is None and v.config_map is None and v.size_limit_bytes for v in writable),
        "it writes only to size-limited emptyDirs",
        ", ".join(f"{v.mount_path} ({'ConfigMap, read only' if v.config_map else v.claim or 'emptyDir'})"
                  for v in launcher.volumes),
    )  # fmt: skip
    bound = {
        b["roleRef"]["name"]
        for b in objects
        if b.get("kind") == "RoleBinding"
        and any(s.get("kind") == "ServiceAccount" and s.get("name") == launcher.service_account
                for s in b.get("subjects") or [])
    }  # fmt: skip
    rules = [r for o in objects if o.get("kind") == "Role" and o["metadata"]["name"] in bound for r in o["rules"]]
    check(
        launcher.service_account not in ("", "default")
        and rules == [{"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"], "verbs": ["create"]}],
        f"its token is service account {launcher.service_account}'s, which may only create JobSets",
        json.dumps(rules),
    )


def check_jobset_pods(name: str, steps: list[tuple[Step, list[ContainerRun]]]) -> None:
    runs = [run for _, step_runs in steps for run in step_runs]
    unexpanded = [a for run in runs for a in run.args or () if "$(" in a]
    check(
        all(run.env.get("RUN_NAME") == run.pod_labels.get(JOBSET_NAME_LABEL) == name for run in runs)
        and not unexpanded,
        f"every pod of JobSet {name} gets RUN_NAME={name} and its args expanded from it",
        ", ".join(unexpanded),
    )
    indices = [run.env.get("JOB_COMPLETION_INDEX") for step, step_runs in steps if step.indexed for run in step_runs]
    check(indices == [str(i) for i in range(len(indices))], "each worker gets its JOB_COMPLETION_INDEX", str(indices))


def first_model_book(registry: Path, model: str, version: str) -> str:
    import numpy as np

    with np.load(registry / model / "versions" / version / "model.npz", allow_pickle=False) as npz:
        return str(npz["item_ids"][0])


def model_bytes(registry: Path, model: str, version: str) -> bytes:
    return (registry / model / "versions" / version / "model.npz").read_bytes()


def tier(args: argparse.Namespace) -> dict[str, Any]:
    # Containers a killed run left behind (their names carry that run's process id).
    for stale in docker("ps", "--all", "--quiet", "--filter", f"name=^{CONTAINER_PREFIX}").split():
        docker("rm", "--force", stale, check=False)
    log("== the dev stack's workloads (rendered under mocks)")
    objects = capture_stack("dev").kubernetes_objects()
    jobset = find_workload(objects, kind="JobSet", name="bookstore-train", component="training")
    steps = jobset_runs(jobset)
    launcher = container_run(
        find_workload(objects, kind="CronJob", name="bookstore-retrain-launcher", component="training-launcher")
    )
    server = container_run(
        find_workload(objects, kind="Deployment", name="bookstore-recommender", component="inference")
    )
    log(f"== the dev stack with {', '.join(f'{k}={v}' for k, v in ONE_WORKER.items())}")
    single = capture_stack("dev", ONE_WORKER).kubernetes_objects()
    train = container_run(find_workload(single, kind="Job", name="bookstore-train", component="training"))
    retrain = container_run(find_workload(single, kind="CronJob", name="bookstore-retrain", component="training"))
    runs = (train, retrain, *(step_runs[0] for _, step_runs in steps), server)
    images = {r.image for r in runs}
    check(len(images) == 1, f"the {len(runs)} recommender pods run one image", ", ".join(sorted(images)))
    (reference,) = images
    tag = content_tag(CONTEXT, DOCKERFILE)
    check(reference.endswith(f":{tag}"), "the manifests name the image by the content tag of recommender/", reference)
    image = CI_PREFIX + reference
    check_jobset_pods(jobset["metadata"]["name"], steps)
    check_launcher(launcher, objects, train)

    log(f"== build {image} ({'on ' + args.base_image if args.base_image else 'on the official base'})")
    seconds = build(image, args.base_image, args.build_image)
    check(True, "recommender/Dockerfile built", f"{seconds:.0f} s{', no network' if args.base_image else ''}")
    base = args.base_image or _official_base()
    facts = image_facts(image, base, runs, stand_in=bool(args.base_image))

    log("== the pods' containers")
    with scratch_directory(args.keep) as scratch:
        # Two model stores: one for the one-worker stack, one for the JobSet's.
        one, distributed = Pods(scratch / "one-worker", image), Pods(scratch / "jobset", image)
        try:
            model = train.flag("--model")
            _, train_seconds = run_to_completion(train, one, "train")
            registry = claim_of(train, one, "--registry")
            listing = registry_listing(registry, model)
            production = listing["aliases"].get("production")
            versions = {v["version"] for v in listing["versions"]}
            check(
                production in versions and len(versions) == 1,
                "train: one version registered and promoted to production",
                str(production)[:12],
            )

            run_to_completion(retrain, one, "retrain")
            again = registry_listing(registry, model)
            check(
                {v["version"] for v in again["versions"]} == versions
                and again["aliases"].get("production") == production,
                "retrain: the CronJob's run registered nothing new and production is unchanged",
                f"{len(again['versions'])} version(s)",
            )

            started = time.monotonic()
            pods = run_jobset(jobset["metadata"]["name"], steps, distributed)
            facts["jobset"] = time.monotonic() - started
            shards = [json.loads(p.output("stdout")) for p in pods["workers"]]
            check(
                [s.get("computed") for s in shards] == [True] * len(shards),
                "jobset: each worker computed its own shard",
                ", ".join(str(s.get("shard")) for s in shards),
            )
            (finish,) = (run for step, step_runs in steps if step.name == "finish" for run in step_runs)
            jobset_registry = claim_of(finish, distributed, "--registry")
            merged = registry_listing(jobset_registry, model)
            promoted = merged["aliases"].get("production")
            check(
                promoted == production and [v["version"] for v in merged["versions"]] == [production],
                "jobset: it promoted the very version the one-worker Job promoted",
                f"{str(promoted)[:12]} vs {str(production)[:12]}",
            )
            check(
                model_bytes(jobset_registry, model, promoted) == model_bytes(registry, model, production),
                "jobset: its model.npz is the single-process one, byte for byte",
            )
            # The run's scratch (its data) is gone once the model is promoted; the model knows its books.
            check(
                not (jobset_registry / ".runs" / jobset["metadata"]["name"]).exists(),
                "jobset: the run's data and shards were removed once its model was promoted",
            )
            book = first_model_book(jobset_registry, model, promoted)
            facts["startup"] = serve(server, distributed, book, promoted)
            facts["train"] = train_seconds
        finally:
            one.remove_all()
            distributed.remove_all()
    return facts


def _official_base() -> str:
    text = DOCKERFILE.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("ARG PYTHON_IMAGE="))
    return line.split("=", 1)[1].strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.container_tier", description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", help="build on this image instead of the Dockerfile's official base")
    parser.add_argument("--build-image", help="the build stage's image (default: the base); may hold the wheels")
    parser.add_argument("--summary-file", type=Path, help="write the one-line result here")
    parser.add_argument("--keep", action="store_true", help="keep the pods' host directories")
    args = parser.parse_args(argv)
    try:
        facts = tier(args)
    except (TierError, LookupError, ValueError) as err:
        log(f"FAIL {err}")
        summary = str(err).splitlines()[0]
        code = 1
    else:
        where = "Debian stand-in base" if args.base_image else "official base"
        summary = (
            f"image {mb(facts['size'])} on the {where} ({mb(facts['added'])} added"
            + (f", ~{mb(facts['estimate'])} on the official base" if args.base_image else "")
            + f"); training {facts['train']:.0f} s, as a JobSet {facts['jobset']:.0f} s (same version);"
            + f" server ready in {facts['startup']:.1f} s; launcher checked as written (needs an API server)"
        )
        code = 0
    if args.summary_file:
        args.summary_file.write_text(summary + "\n")
    log(summary)
    return code


if __name__ == "__main__":
    sys.exit(main())
