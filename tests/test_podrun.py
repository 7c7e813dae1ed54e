"""The pod -> `docker run` translation the container tier relies on (offline: no Docker needed).

The tier itself (``scripts/container-test.sh``) runs these arguments; here they are checked
against the rendered dev stack (its JobSet; with one worker, its Job and CronJob) and against
small manifests for each rule.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mlplatform.capture import Capture
from tests.k8s_env import JOBSET_NAME_LABEL, RESTARTS_LABEL
from tests.podrun import UnsupportedError, container_run, docker_args, find_workload, run_as_non_root_error


def pod_manifest(kind: str = "Job", **container: Any) -> dict[str, Any]:
    pod = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "main",
                "image": "example:1",
                "securityContext": {
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                **container,
            }
        ],
        "volumes": [
            {"name": "store", "persistentVolumeClaim": {"claimName": "store"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }
    template = {"spec": pod}
    spec: dict[str, Any] = {"template": template}
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": spec}}
    labels = {"app.kubernetes.io/name": "example", "app.kubernetes.io/component": "training"}
    return {"kind": kind, "metadata": {"name": "example-1a2b3c4d", "labels": labels}, "spec": spec}


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def host_paths(run: Any) -> dict[str, Path]:
    return {v.name: Path("/h") / v.name for v in run.volumes}


def test_the_rendered_training_job_runs_as_its_pod_says(dev_one_worker: Capture) -> None:
    job = find_workload(dev_one_worker.kubernetes_objects(), kind="Job", name="bookstore-train", component="training")
    run = container_run(job)
    argv = docker_args(run, image="img:1", name="t", host_paths={v.name: Path("/h") / v.name for v in run.volumes})
    assert flag_values(argv, "--network") == ["none"]
    assert flag_values(argv, "--user") == ["10001:10001"]
    assert flag_values(argv, "--group-add") == ["10001"]  # fsGroup
    assert flag_values(argv, "--cap-drop") == ["ALL"]
    assert flag_values(argv, "--security-opt") == ["no-new-privileges"]
    assert "--read-only" in argv
    assert flag_values(argv, "--memory") == [f"{2 * 1024**3}b"]
    assert sorted(flag_values(argv, "--volume")) == ["/h/model-store:/models", "/h/tmp:/tmp", "/h/work:/work"]
    assert {v.mount_path: v.size_limit_bytes for v in run.volumes if v.claim is None} == {
        "/work": 2 * 1024**3,
        "/tmp": 1024**3,
    }
    # command replaces the ENTRYPOINT; the rest of it and the args follow the image.
    assert flag_values(argv, "--entrypoint") == ["python"]
    assert argv[argv.index("img:1") + 1 :] == [
        "-m",
        "recommender",
        *job["spec"]["template"]["spec"]["containers"][0]["args"],
    ]


def test_the_rendered_deployment_publishes_on_loopback_only_and_mounts_the_store_read_only(dev: Capture) -> None:
    objects = dev.kubernetes_objects()
    run = container_run(find_workload(objects, kind="Deployment", name="bookstore-recommender", component="inference"))
    argv = docker_args(
        run, image="img:1", name="s", host_paths={v.name: Path("/h") / v.name for v in run.volumes}, publish=True
    )
    assert flag_values(argv, "--network") == ["bridge"]
    assert flag_values(argv, "--publish") == ["127.0.0.1::8080/tcp"]
    assert "/h/model-store:/models:ro" in flag_values(argv, "--volume")
    # Named probe ports resolve to the container port.
    assert {(p.name, p.path, p.container_port) for p in run.probes} == {
        ("startupProbe", "/ready", 8080),
        ("readinessProbe", "/ready", 8080),
        ("livenessProbe", "/live", 8080),
    }


def test_the_rendered_cronjob_runs_the_same_container_as_the_job(dev_one_worker: Capture) -> None:
    objects = dev_one_worker.kubernetes_objects()
    job = container_run(find_workload(objects, kind="Job", name="bookstore-train", component="training"))
    cron = container_run(find_workload(objects, kind="CronJob", name="bookstore-retrain", component="training"))
    assert (cron.args, cron.volumes, cron.network) == (job.args, job.volumes, "none")


def test_the_rendered_jobset_runs_each_step_as_its_pods_would(dev: Capture, dev_one_worker: Capture) -> None:
    jobset = find_workload(dev.kubernetes_objects(), kind="JobSet", name="bookstore-train", component="training")
    job = container_run(
        find_workload(dev_one_worker.kubernetes_objects(), kind="Job", name="bookstore-train", component="training")
    )
    name = jobset["metadata"]["name"]
    steps = [rj["name"] for rj in jobset["spec"]["replicatedJobs"]]
    assert steps == ["prepare", "workers", "finish"]
    runs = [
        container_run(jobset, template=steps.index("prepare")),
        *(container_run(jobset, template=steps.index("workers"), index=i) for i in range(2)),
        container_run(jobset, template=steps.index("finish")),
    ]
    for run in runs:
        # RUN_NAME comes from the label JobSet puts on its pods, and $(RUN_NAME) from RUN_NAME.
        assert run.pod_labels[JOBSET_NAME_LABEL] == name
        assert run.env["RUN_NAME"] == name
        assert not [a for a in run.args or () if "$(" in a], run.args
        assert any(a.startswith(f"/models/.runs/{name}/") for a in run.args or ()), run.args
        argv = docker_args(run, image="img:1", name="t", host_paths=host_paths(run))
        assert flag_values(argv, "--network") == ["none"]
        # Same pod as the one-worker Job but for what the step runs.
        assert (run.volumes, run.run_as_user, run.groups, run.read_only_root, run.cap_drop) == (
            job.volumes,
            job.run_as_user,
            job.groups,
            job.read_only_root,
            job.cap_drop,
        )
        assert not run.service_account_token
    assert [(r.step, r.index, r.env.get("JOB_COMPLETION_INDEX")) for r in runs] == [
        ("prepare", None, None),
        ("workers", 0, "0"),
        ("workers", 1, "1"),
        ("finish", None, None),
    ]
    assert container_run(jobset, template=1, restarts=2).pod_labels[RESTARTS_LABEL] == "2"
    with pytest.raises(UnsupportedError, match=r"completion index 2 is outside 0\.\.1"):
        container_run(jobset, template=steps.index("workers"), index=2)
    with pytest.raises(UnsupportedError, match="not Indexed"):
        container_run(jobset, template=steps.index("finish"), index=1)


def test_the_launcher_cronjob_is_read_but_never_run(dev: Capture) -> None:
    cron = find_workload(
        dev.kubernetes_objects(), kind="CronJob", name="bookstore-retrain-launcher", component="training-launcher"
    )
    run = container_run(cron)
    assert run.service_account_token and run.service_account == "bookstore-retrain-launcher"
    assert {v.mount_path: v.read_only for v in run.volumes if v.config_map} == {"/launch": True}
    with pytest.raises(UnsupportedError, match="service account token"):
        docker_args(run, image="img:1", name="l", host_paths=host_paths(run))


def test_workloads_are_found_by_labels_not_by_name() -> None:
    renamed = pod_manifest()
    assert find_workload([renamed], kind="Job", name="example", component="training") is renamed
    with pytest.raises(LookupError, match="found 0"):
        find_workload([renamed], kind="Job", name="example-1a2b3c4d", component="training")
    with pytest.raises(LookupError, match="found 2"):
        find_workload([renamed, copy.deepcopy(renamed)], kind="Job", name="example", component="training")


def test_the_container_security_context_wins_over_the_pods() -> None:
    manifest = pod_manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = 20002
    run = container_run(manifest)
    assert (run.run_as_user, run.run_as_group) == (20002, 10001)


def test_without_command_the_images_entrypoint_stays_and_args_replace_its_cmd() -> None:
    run = container_run(pod_manifest(args=["serve", "--port", "8080"]))
    argv = docker_args(run, image="img:1", name="x", host_paths={"store": Path("/s"), "tmp": Path("/t")})
    assert "--entrypoint" not in argv
    assert argv[-4:] == ["img:1", "serve", "--port", "8080"]


def test_a_memory_emptydir_is_a_tmpfs_of_its_size_owned_by_the_fsgroup() -> None:
    manifest = pod_manifest(volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}])
    manifest["spec"]["template"]["spec"]["volumes"][1]["emptyDir"]["medium"] = "Memory"
    argv = docker_args(container_run(manifest), image="img:1", name="x", host_paths={})
    assert flag_values(argv, "--tmpfs") == [f"/tmp:rw,exec,nosuid,nodev,mode=2777,gid=10001,size={1024**3}"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m.update(kind="StatefulSet"), "kind 'StatefulSet'"),
        (lambda m: pod(m)["volumes"].append({"name": "cfg", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda m: pod(m)["containers"][0].update(env=[{"name": "A", "valueFrom": {}}]), "env[A]"),
        (
            lambda m: pod(m)["containers"][0].update(
                env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
            ),
            "env[A]: fieldRef 'status.podIP'",
        ),
        (lambda m: pod(m).update(hostNetwork=True), "hostNetwork"),
        (lambda m: pod(m)["containers"][0].update(ports=[{"containerPort": 53, "protocol": "UDP"}]), "ports"),
    ],
)
def test_what_the_tier_cannot_reproduce_is_refused_by_name(change: Any, field: str) -> None:
    manifest = pod_manifest(volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}] if field == "hostPath" else [])
    change(manifest)
    with pytest.raises(UnsupportedError, match=f"^.*{field.replace('[', '.').replace(']', '.')}"):
        container_run(manifest)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda m: pod(m)["volumes"].append({"name": "cfg", "configMap": {"name": "c"}}), "ConfigMap c"),
        (lambda m: pod(m).pop("automountServiceAccountToken"), "service account token"),
        (lambda m: pod(m).update(automountServiceAccountToken=True), "service account token"),
    ],
)
def test_what_the_tier_reads_but_cannot_run_is_refused_when_run(change: Any, refusal: str) -> None:
    manifest = pod_manifest(volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}] if "ConfigMap" in refusal else [])
    change(manifest)
    run = container_run(manifest)
    with pytest.raises(UnsupportedError, match=refusal):
        docker_args(run, image="img:1", name="x", host_paths=host_paths(run))


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize(
    ("run_as_user", "image_user", "refused"),
    [
        (None, "10001:10001", False),
        (None, "10001", False),
        (None, "", True),  # no USER: root
        (None, "0:0", True),
        (None, "app", True),  # a name cannot be verified
        (10001, "", False),  # the pod's UID is what counts when it is set
        (0, "10001", True),
    ],
)
def test_run_as_non_root_is_checked_as_the_kubelet_does(
    run_as_user: int | None, image_user: str, refused: bool
) -> None:
    manifest = pod_manifest()
    if run_as_user is None:
        del pod(manifest)["securityContext"]["runAsUser"]
    else:
        pod(manifest)["securityContext"]["runAsUser"] = run_as_user
    assert (run_as_non_root_error(container_run(manifest), image_user) is not None) == refused
