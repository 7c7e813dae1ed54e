"""Hand-built resources for policy tests: compliant by default, one override away from a violation."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from mlpolicy.model import Resource  # on sys.path through conftest.py, as in the pack process

from mlplatform.capture import Capture
from workloads.retrain_schedule import RetrainSpec, launcher_manifests
from workloads.training_job import DistributedSteps, TrainingSpec, training_manifest

ML_NS = "bookstore-ml"
TYPES = {
    "Pod": "kubernetes:core/v1:Pod",
    "Deployment": "kubernetes:apps/v1:Deployment",
    "StatefulSet": "kubernetes:apps/v1:StatefulSet",
    "DaemonSet": "kubernetes:apps/v1:DaemonSet",
    "ReplicaSet": "kubernetes:apps/v1:ReplicaSet",
    "Job": "kubernetes:batch/v1:Job",
    "CronJob": "kubernetes:batch/v1:CronJob",
    "Service": "kubernetes:core/v1:Service",
    "Namespace": "kubernetes:core/v1:Namespace",
    "JobSet": "kubernetes:jobset.x-k8s.io/v1alpha2:JobSet",
    "ConfigMap": "kubernetes:core/v1:ConfigMap",
    "ServiceAccount": "kubernetes:core/v1:ServiceAccount",
    "Role": "kubernetes:rbac.authorization.k8s.io/v1:Role",
    "ClusterRole": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
    "RoleBinding": "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
    "ClusterRoleBinding": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
}
GPU_POOL = {"mlplatform.io/pool": "gpu"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}


def urn(kind: str, name: str) -> str:
    return f"urn:pulumi:test::ml-platform::{TYPES.get(kind, kind)}::{name}"


def container(
    name: str = "app", image: str = "ghcr.io/example/app:1.2.3", gpus: int = 0, **extra: Any
) -> dict[str, Any]:
    """A container that meets every container rule (as the engine sends numbers: doubles)."""
    requests: dict[str, Any] = {"cpu": "250m", "memory": "256Mi"}
    limits: dict[str, Any] = {"cpu": "1", "memory": "512Mi"}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
        limits["nvidia.com/gpu"] = float(gpus)
    return {
        "name": name,
        "image": image,
        "resources": {"requests": requests, "limits": limits},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 10001.0,
        },
        **extra,
    }


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": list(containers) or [container()],
        **extra,
    }


def workload(
    kind: str,
    name: str = "app",
    *,
    namespace: str = ML_NS,
    spec: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    pod_labels: dict[str, str] | None = None,
) -> Resource:
    """A ``kind`` workload whose pod template is ``spec`` (a compliant one by default)."""
    pod = spec if spec is not None else pod_spec()
    template = {"metadata": {"labels": pod_labels or {"app": name}}, "spec": pod}
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    if kind == "Pod":
        body: dict[str, Any] = {
            "metadata": {**metadata, "labels": {**metadata["labels"], **(pod_labels or {})}},
            "spec": pod,
        }
    elif kind == "CronJob":
        job_meta = {"labels": dict(labels or {})}
        body = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"metadata": job_meta, "spec": {"template": template}}},
        }
    elif kind == "Job":
        body = {"metadata": metadata, "spec": {"template": {**template, "spec": {**pod, "restartPolicy": "Never"}}}}
    elif kind == "JobSet":
        # The same pod template in two replicated jobs: a finding shows in both, the violation once.
        return jobset(name, namespace=namespace, labels=labels, jobs={"workers": pod, "finish": pod})
    else:
        body = {
            "metadata": metadata,
            "spec": {"replicas": 1.0, "selector": {"matchLabels": {"app": name}}, "template": template},
        }
    api = TYPES[kind].split(":")[1].replace("core/", "")
    return Resource(TYPES[kind], name, {"apiVersion": api, "kind": kind, **body}, urn(kind, name))


def service(name: str, selector: dict[str, str], *, namespace: str = ML_NS, type_: str = "ClusterIP") -> Resource:
    props = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": type_, "selector": selector, "ports": [{"port": 80.0, "targetPort": 8080.0}]},
    }
    return Resource(TYPES["Service"], name, props, urn("Service", name))


def resources_of(capture: Capture) -> list[Resource]:
    """A captured stack as the rules see it (plain props)."""
    return [Resource(r.type, r.name, r.props, r.urn, r.parent) for r in capture.resources]


def modified(resources: list[Resource], name: str, edit: Any) -> list[Resource]:
    """``resources`` with the one named ``name`` replaced by ``edit(deep copy of its props)``."""
    out = []
    for r in resources:
        if r.name == name:
            props = copy.deepcopy(dict(r.props))
            edit(props)
            r = Resource(r.type, r.name, props, r.urn, r.parent)
        out.append(r)
    return out


def jobset(
    name: str = "train",
    *,
    namespace: str = ML_NS,
    labels: dict[str, str] | None = None,
    jobs: dict[str, dict[str, Any]] | None = None,
) -> Resource:
    """A JobSet with one replicated job per ``jobs`` entry (name -> pod spec); compliant pods by default."""
    replicated = [
        {
            "name": job,
            "replicas": 1.0,
            "template": {
                "spec": {
                    "backoffLimit": 0.0,
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {**pod, "restartPolicy": "Never"}},
                }
            },
        }
        for job, pod in (jobs or {"workers": pod_spec(), "finish": pod_spec()}).items()
    ]
    props = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"failurePolicy": {"maxRestarts": 2.0}, "replicatedJobs": replicated},
    }
    return Resource(TYPES["JobSet"], name, props, urn("JobSet", name))


def k8s_object(kind: str, name: str, namespace: str | None = ML_NS, **fields: Any) -> Resource:
    """Any other object: ``kind`` from TYPES, ``metadata.name`` = ``name``, top-level ``fields``."""
    api = TYPES[kind].split(":")[1].replace("core/", "")
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    props = {"apiVersion": api, "kind": kind, "metadata": metadata, **fields}
    return Resource(TYPES[kind], name, props, urn(kind, name))


LAUNCH_RULE = {"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"], "verbs": ["create"]}


def sa_subject(name: str, namespace: str = ML_NS) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def binding(
    name: str,
    role: str,
    *subjects: dict[str, str],
    namespace: str | None = ML_NS,
    role_kind: str = "Role",
) -> Resource:
    """A RoleBinding (a ClusterRoleBinding when ``namespace`` is None) of ``role`` to ``subjects``."""
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}
    return k8s_object(kind, name, namespace, roleRef=role_ref, subjects=list(subjects))


def launched_jobset_yaml(labels: dict[str, str] | None = None, namespace: str | None = None) -> str:
    """The JobSet manifest a launcher creates, as the ConfigMap holds it (YAML, generateName)."""
    manifest = dict(jobset(labels=labels if labels is not None else {"kueue.x-k8s.io/queue-name": "default"}).props)
    metadata = {"generateName": "retrain-", "labels": manifest["metadata"]["labels"]}
    if namespace:
        metadata["namespace"] = namespace
    return yaml.safe_dump({**manifest, "metadata": metadata})


def launcher(
    name: str = "retrain",
    *,
    rules: list[dict[str, Any]] | None = None,
    jobset_yaml: str | None = None,
    extra: tuple[Resource, ...] = (),
) -> list[Resource]:
    """A verified JobSet launcher by default: CronJob (labelled, token mounted, kubectl), its
    ServiceAccount, a Role with only the launch rule, the RoleBinding, the ConfigMap with the JobSet."""
    account = f"{name}-launcher"
    kubectl = container("launch", image="registry.k8s.io/kubectl:v1.34.1")
    kubectl["command"] = ["kubectl", "create", "-f", "/etc/launcher/jobset.yaml"]
    kubectl["volumeMounts"] = [{"name": "manifest", "mountPath": "/etc/launcher", "readOnly": True}]
    spec = pod_spec(
        kubectl,
        serviceAccountName=account,
        automountServiceAccountToken=True,
        volumes=[{"name": "manifest", "configMap": {"name": f"{name}-jobset"}}],
    )
    cronjob = workload("CronJob", name, spec=spec)
    props = copy.deepcopy(dict(cronjob.props))
    props["metadata"]["labels"] = {"mlplatform.io/launches": "JobSet"}
    data = {"jobset.yaml": jobset_yaml if jobset_yaml is not None else launched_jobset_yaml()}
    return [
        Resource(cronjob.type, name, props, cronjob.urn),
        k8s_object("ServiceAccount", account),
        k8s_object("Role", account, rules=rules if rules is not None else [LAUNCH_RULE]),
        binding(account, account, sa_subject(account)),
        k8s_object("ConfigMap", f"{name}-jobset", data=data),
        *extra,
    ]


def from_manifest(manifest: dict[str, Any], name: str | None = None) -> Resource:
    """A manifest from the program's pure builders as the engine would send it (type token from apiVersion)."""
    api, kind = manifest["apiVersion"], manifest["kind"]
    version = api if "/" in api else f"core/{api}"
    name = name or manifest["metadata"].get("name") or manifest["metadata"]["generateName"]
    return Resource(f"kubernetes:{version}:{kind}", name, manifest, f"urn:pulumi:test::ml-platform::{kind}::{name}")


def distributed_training(name: str = "bookstore-train", *, workers: int = 3, gpus: int = 1) -> TrainingSpec:
    """A run of the program's own TrainingSpec: prepare, ``workers`` workers, finish (a JobSet)."""
    return TrainingSpec(
        name=name,
        namespace=ML_NS,
        image="ghcr.io/example/recommender:1.0.0",
        command=["python", "-m", "recommender"],
        gpus=gpus,
        workers=workers,
        steps=DistributedSteps(worker_args=["train"], finish_args=["merge"], prepare_args=["generate"]),
    )


def programs_distributed_objects() -> list[Resource]:
    """What the program renders for distributed training: the run's JobSet (workloads/training_job.py)
    and a nightly retrain's launcher (workloads/retrain_schedule.py), as the engine would send them."""
    run = training_manifest(distributed_training())
    retrain = RetrainSpec(distributed_training("bookstore-retrain", workers=2, gpus=0))
    return [from_manifest(run), *(from_manifest(m) for m in launcher_manifests(retrain))]
