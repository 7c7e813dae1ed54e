"""An online model server: Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget,
its own service account and the network policy that admits its clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from mlplatform.objects import apply, child_options, labels_for
from mlplatform.tenancy import ingress_policy

from .pod import EmptyDir, Mount, container_security, env_list, pod_security, resources, volumes_and_mounts

__all__ = ["Client", "InferenceService", "InferenceSpec", "inference_manifests"]


@dataclass(frozen=True)
class Client:
    """Who may call the service: pods by label, in namespaces by label (None = this namespace)."""

    pods: Mapping[str, str] | None = None
    namespaces: Mapping[str, str] | None = None


@dataclass(frozen=True)
class InferenceSpec:
    name: str
    namespace: str
    image: str | pulumi.Output[str]  # an Output when the image is built by the stack
    command: Sequence[str]
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 8080
    ready_path: str = "/ready"  # 200 only once the model is loaded: gates traffic and rollouts
    live_path: str = "/live"
    startup_seconds: int = 600  # how long a new pod may wait for its first model
    cpu: str = "250m"
    memory: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"
    min_replicas: int = 2
    max_replicas: int = 4
    target_cpu_percent: int = 70
    # An HPA metric entry replacing CPU (e.g. requests/s per pod from prometheus-adapter).
    scale_metric: Mapping[str, Any] | None = None
    volumes: Sequence[Mount | EmptyDir] = ()
    clients: Sequence[Client] = ()
    version: str = ""  # shown as app.kubernetes.io/version (the image's content tag)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/instance": f"{self.namespace}-{self.name}"}


def _deployment(spec: InferenceSpec) -> dict[str, Any]:
    pod_volumes, mounts = volumes_and_mounts(spec.volumes)
    labels = labels_for("inference", **spec.labels)
    if spec.version:
        labels["app.kubernetes.io/version"] = spec.version
    probe = {"httpGet": {"path": spec.ready_path, "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2}
    container = {
        "name": "server",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(spec.command),
        "args": list(spec.args),
        "env": env_list(spec.env),
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "startupProbe": {**probe, "failureThreshold": max(1, spec.startup_seconds // 5)},
        "readinessProbe": {**probe, "failureThreshold": 2},
        "livenessProbe": {
            "httpGet": {"path": spec.live_path, "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": resources(spec.cpu, spec.memory, cpu_limit=spec.cpu_limit, memory_limit=spec.memory_limit),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": dict(spec.annotations),
        },
        # No `replicas`: the HPA owns it, and applying one would fight every scale-up.
        "spec": {
            "selector": {"matchLabels": spec.labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": dict(spec.annotations)},
                "spec": {
                    "serviceAccountName": spec.name,
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": pod_volumes,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": spec.labels},
                        }
                    ],
                },
            },
        },
    }


def inference_manifests(spec: InferenceSpec) -> list[dict[str, Any]]:
    """Every object of the service, in apply order."""
    meta = {"name": spec.name, "namespace": spec.namespace, "labels": labels_for("inference", **spec.labels)}
    metric = spec.scale_metric or {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": spec.target_cpu_percent}},
    }
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False},
        _deployment(spec),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "selector": spec.labels,
                "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
                "minReplicas": spec.min_replicas,
                "maxReplicas": spec.max_replicas,
                "metrics": [dict(metric)],
                # Scale up at once, down slowly: a cold replica must load the model before it serves.
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {
                "minAvailable": max(1, spec.min_replicas - 1),
                "selector": {"matchLabels": spec.labels},
                # A replica that never became ready must not block a node drain.
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        },
    ]
    for i, client in enumerate(spec.clients):
        objects.append(
            ingress_policy(
                spec.namespace,
                f"{spec.name}-clients-{i}",
                pod_labels=spec.labels,
                port=spec.port,
                from_namespaces=client.namespaces,
                from_pods=client.pods,
            )
        )
    return objects


class InferenceService(pulumi.ComponentResource):
    """A model server that only receives traffic once its model is loaded.

    Guarantees: startup and readiness probes on the server's ready path (200 only with a verified
    model), liveness on its live path; rolling updates never drop below the current ready count
    (maxUnavailable 0); an HPA between min and max replicas (CPU unless ``scale_metric``); a PDB
    keeping all but one replica through voluntary disruptions; a dedicated token-less service
    account; ingress admitted only from the declared clients (the namespace denies the rest).
    """

    def __init__(self, name: str, spec: InferenceSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:InferenceService", name, None, opts)
        created: dict[str, pulumi.CustomResource] = {}
        for manifest in inference_manifests(spec):
            kind = manifest["kind"]
            suffix = manifest["metadata"]["name"] if kind == "NetworkPolicy" else kind.lower()
            # Pods of the Deployment cannot be created before their service account exists.
            after = [created["serviceaccount"]] if "serviceaccount" in created else []
            created[suffix] = apply(f"{name}-{suffix}", manifest, child_options(opts, self, depends_on=after))
        self.deployment = created["deployment"]
        self.service_name = pulumi.Output.from_input(spec.name)
        self.service_url = pulumi.Output.from_input(
            f"http://{spec.name}.{spec.namespace}.svc.cluster.local:{spec.port}"
        )
        self.register_outputs({"service_name": self.service_name, "service_url": self.service_url})
