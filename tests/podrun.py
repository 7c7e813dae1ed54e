"""A rendered workload's pod, read as the kubelet would run it, and turned into `docker run`.

Pure functions only (no Docker, no files): the container tier (``tests/container_tier.py``) runs
what they return, the contract test (``tests/test_contract.py``) runs the same as processes, and
``tests/test_podrun.py`` checks them offline. Workloads are found by kind and labels, never by
``metadata.name`` (the training run's name is derived from its content). A pod is the one its
controllers create (``tests/k8s_env.py``): a JobSet's labels, an Indexed Job's completion index,
the environment the kubelet resolves and ``$(VAR)`` expanded in command and args. A kind is
supported once ``POD_TEMPLATES`` says where its pod templates live and ``NETWORK`` what network
its pods get; a field the tier cannot reproduce is refused with its path, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from mlplatform.quantity import parse_quantity
from tests.k8s_env import (
    COMPLETION_INDEX_KEY,
    EnvError,
    container_env,
    expand_command,
    indexed_pod,
    jobset_pod_metadata,
)

__all__ = [
    "NETWORK",
    "POD_TEMPLATES",
    "ContainerRun",
    "Probe",
    "UnsupportedError",
    "Volume",
    "container_run",
    "docker_args",
    "find_workload",
    "identity_args",
    "run_as_non_root_error",
]

NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"


class UnsupportedError(ValueError):
    """A manifest field the container tier cannot reproduce faithfully."""


# Where each kind keeps its pod templates: the spec holding each ``template`` (a Job's also holds
# its deadline and completion mode). A JobSet has one per replicated job, in order;
# ``container_run`` takes the one it is asked for.
POD_TEMPLATES: dict[str, Callable[[Mapping[str, Any]], list[Mapping[str, Any]]]] = {
    "Job": lambda m: [m["spec"]],
    "CronJob": lambda m: [m["spec"]["jobTemplate"]["spec"]],
    "Deployment": lambda m: [m["spec"]],
    "JobSet": lambda m: [rj["template"]["spec"] for rj in m["spec"]["replicatedJobs"]],
}
# The network a pod of each kind gets. Training reads and writes only its volumes (the namespace
# denies all traffic but DNS; a JobSet's workers share files, not a network), so it runs with
# none: a download slipped into it fails here. Servers get a bridge whose declared ports are
# published on the host's loopback only.
NETWORK: dict[str, str] = {"Job": "none", "CronJob": "none", "JobSet": "none", "Deployment": "bridge"}


def find_workload(objects: Iterable[Mapping[str, Any]], *, kind: str, name: str, component: str) -> Mapping[str, Any]:
    """The one object of ``kind`` labelled ``app.kubernetes.io/name=name`` and ``/component=component``."""
    found = [
        o
        for o in objects
        if o.get("kind") == kind
        and (o.get("metadata") or {}).get("labels", {}).get(NAME_LABEL) == name
        and (o.get("metadata") or {}).get("labels", {}).get(COMPONENT_LABEL) == component
    ]
    if len(found) != 1:
        raise LookupError(
            f"expected one {kind} labelled {NAME_LABEL}={name}, {COMPONENT_LABEL}={component}; found {len(found)}"
        )
    return found[0]


@dataclass(frozen=True)
class Volume:
    """A mounted volume: a claim (shared by every pod naming it), a pod's own emptyDir, or a
    ConfigMap (read only; its content is not available here, so such a pod is not run)."""

    name: str
    mount_path: str
    read_only: bool
    claim: str | None = None  # persistentVolumeClaim.claimName; None for an emptyDir
    size_limit_bytes: int | None = None  # emptyDir.sizeLimit
    memory: bool = False  # emptyDir.medium: Memory (a tmpfs)
    config_map: str | None = None  # configMap.name


@dataclass(frozen=True)
class Probe:
    name: str  # startupProbe, readinessProbe, livenessProbe
    path: str
    container_port: int
    period_seconds: int
    timeout_seconds: int
    failure_threshold: int
    initial_delay_seconds: int

    @property
    def budget_seconds(self) -> int:
        """How long the kubelet lets it fail before acting."""
        return self.initial_delay_seconds + self.period_seconds * self.failure_threshold


@dataclass(frozen=True)
class ContainerRun:
    """One container of a pod, with the settings the kubelet would give it."""

    kind: str
    workload: str  # the app.kubernetes.io/name label
    container: str
    image: str
    command: tuple[str, ...] | None  # replaces the image's ENTRYPOINT (and drops its CMD)
    args: tuple[str, ...] | None  # replaces the image's CMD
    env: Mapping[str, str]
    working_dir: str | None
    run_as_user: int | None
    run_as_group: int | None
    run_as_non_root: bool
    groups: tuple[int, ...]  # fsGroup and supplementalGroups
    fs_group: int | None
    read_only_root: bool
    no_new_privileges: bool
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    seccomp: str  # RuntimeDefault or Unconfined
    memory_limit_bytes: int | None
    cpu_limit: Decimal | None
    ports: Mapping[str, int]  # name (or str(number)) -> containerPort, TCP only
    probes: tuple[Probe, ...]
    volumes: tuple[Volume, ...]
    network: str
    deadline_seconds: int | None  # activeDeadlineSeconds
    step: str | None  # the JobSet's replicated job; None for other kinds
    index: int | None  # the completion index of an Indexed Job's pod
    pod_labels: Mapping[str, str]  # as the controllers set them
    service_account: str
    service_account_token: bool  # automountServiceAccountToken (unset: Kubernetes mounts one)

    @property
    def title(self) -> str:
        """``Kind workload[/step][#index]``: which pod this is, for messages."""
        step = f"/{self.step}" if self.step else ""
        index = f"#{self.index}" if self.index is not None else ""
        return f"{self.kind} {self.workload}{step}{index}"

    def flag(self, name: str) -> str:
        """The value after ``name`` in the container's args."""
        args = list(self.args or ())
        if name not in args[:-1]:
            raise LookupError(f"{self.title}: container {self.container} has no {name} argument")
        return args[args.index(name) + 1]

    def volume_at(self, path: str) -> Volume:
        """The volume holding ``path`` inside the container (the deepest mount)."""
        holders = [v for v in self.volumes if path == v.mount_path or path.startswith(v.mount_path.rstrip("/") + "/")]
        if not holders:
            raise LookupError(f"{self.title}: {path} is on no mounted volume")
        return max(holders, key=lambda v: len(v.mount_path))


_POD_FIELDS_REFUSED = ("initContainers", "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace")
_CONTAINER_FIELDS_REFUSED = ("envFrom", "lifecycle", "volumeDevices")


def _bytes(quantity: Any, where: str) -> int:
    try:
        return int(parse_quantity(str(quantity)))
    except ValueError as err:
        raise UnsupportedError(f"{where}: {err}") from err


def _volumes(pod: Mapping[str, Any], container: Mapping[str, Any], where: str) -> tuple[Volume, ...]:
    sources = {v["name"]: v for v in pod.get("volumes") or []}
    volumes = []
    for mount in container.get("volumeMounts") or []:
        at = f"{where}.volumeMounts[{mount['name']}]"
        if mount.get("subPath") or mount.get("subPathExpr"):
            raise UnsupportedError(f"{at}.subPath is not supported by the container tier")
        source = sources.get(mount["name"])
        if source is None:
            raise UnsupportedError(f"{at}: no pod volume named {mount['name']!r}")
        read_only = bool(mount.get("readOnly"))
        if "persistentVolumeClaim" in source:
            claim = source["persistentVolumeClaim"]
            volumes.append(
                Volume(mount["name"], mount["mountPath"], read_only or bool(claim.get("readOnly")), claim["claimName"])
            )
        elif "configMap" in source:
            # The kubelet mounts a ConfigMap read only whatever the mount says.
            volumes.append(Volume(mount["name"], mount["mountPath"], True, config_map=source["configMap"]["name"]))
        elif "emptyDir" in source:
            empty = source["emptyDir"] or {}
            medium = empty.get("medium", "")
            if medium not in ("", "Memory"):
                raise UnsupportedError(f"{at}: emptyDir.medium {medium!r} is not supported (use '' or Memory)")
            limit = _bytes(empty["sizeLimit"], f"{at}.emptyDir.sizeLimit") if "sizeLimit" in empty else None
            volumes.append(Volume(mount["name"], mount["mountPath"], read_only, None, limit, medium == "Memory"))
        else:
            kinds = sorted(set(source) - {"name"})
            raise UnsupportedError(
                f"{at}: volume type {kinds} is not supported (only persistentVolumeClaim, emptyDir and configMap)"
            )
    return tuple(volumes)


def _probes(container: Mapping[str, Any], ports: Mapping[str, int], where: str) -> tuple[Probe, ...]:
    probes = []
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(name)
        if probe is None:
            continue
        http = probe.get("httpGet")
        if http is None or http.get("scheme", "HTTP") != "HTTP" or http.get("host") or http.get("httpHeaders"):
            raise UnsupportedError(
                f"{where}.{name}: only plain httpGet probes (no host, headers or HTTPS) are supported"
            )
        port = ports.get(str(http["port"]))
        if port is None:
            raise UnsupportedError(f"{where}.{name}.httpGet.port {http['port']!r} is not a port the container declares")
        probes.append(
            Probe(
                name,
                http.get("path", "/"),
                port,
                int(probe.get("periodSeconds", 10)),
                int(probe.get("timeoutSeconds", 1)),
                int(probe.get("failureThreshold", 3)),
                int(probe.get("initialDelaySeconds", 0)),
            )
        )
    return tuple(probes)


def _pod(
    kind: str,
    manifest: Mapping[str, Any],
    holder: Mapping[str, Any],
    template: int,
    index: int,
    restarts: int,
    where: str,
) -> dict[str, Any]:
    """The pod its controllers create from the template: labels, annotations, injected env."""
    pod_template = holder["template"]
    if kind == "JobSet":
        metadata = jobset_pod_metadata(manifest, manifest["spec"]["replicatedJobs"][template], restarts=restarts)
    else:
        own = pod_template.get("metadata") or {}
        metadata = {
            "namespace": manifest["metadata"].get("namespace", "default"),
            "labels": dict(own.get("labels") or {}),
            "annotations": dict(own.get("annotations") or {}),
        }
    pod = {"metadata": metadata, "spec": pod_template["spec"]}
    if kind != "Deployment" and holder.get("completionMode") == "Indexed":
        try:
            return indexed_pod(holder, pod, index)
        except ValueError as err:
            raise UnsupportedError(f"{where}: {err}") from err
    if index != 0:
        raise UnsupportedError(f"{where}: pod index {index} given, but the {kind}'s pods are not Indexed")
    return pod


def container_run(
    manifest: Mapping[str, Any], container: str | None = None, template: int = 0, *, index: int = 0, restarts: int = 0
) -> ContainerRun:
    """How the kubelet would run ``container`` (the only one, by default) of the workload's pod:
    of its ``template``-th pod template (a JobSet's replicated job), the pod of completion
    ``index`` (an Indexed Job), in restart attempt ``restarts`` (a JobSet's)."""
    kind = manifest.get("kind", "")
    if kind not in POD_TEMPLATES:
        raise UnsupportedError(
            f"kind {kind!r} is not supported by the container tier (supported: {sorted(POD_TEMPLATES)})"
        )
    workload = manifest["metadata"].get("labels", {}).get(NAME_LABEL) or manifest["metadata"]["name"]
    holder = POD_TEMPLATES[kind](manifest)[template]
    step = manifest["spec"]["replicatedJobs"][template]["name"] if kind == "JobSet" else None
    where = f"{kind} {workload}{'/' + step if step else ''}: pod"
    pod_object = _pod(kind, manifest, holder, template, index, restarts, where)
    pod = pod_object["spec"]
    for key in _POD_FIELDS_REFUSED:
        if pod.get(key):
            raise UnsupportedError(f"{where}.{key} is not supported by the container tier")
    containers = pod["containers"]
    chosen = [c for c in containers if container is None or c["name"] == container]
    if len(chosen) != 1:
        raise UnsupportedError(f"{where}: name one of the containers {[c['name'] for c in containers]}")
    c = chosen[0]
    where = f"{where}.containers[{c['name']}]"
    for key in _CONTAINER_FIELDS_REFUSED:
        if c.get(key):
            raise UnsupportedError(f"{where}.{key} is not supported by the container tier")
    pod_sc, sc = pod.get("securityContext") or {}, c.get("securityContext") or {}

    def setting(key: str) -> Any:  # the container's securityContext wins over the pod's
        return sc.get(key, pod_sc.get(key))

    try:
        env = container_env(c, pod_object)
    except EnvError as err:
        raise UnsupportedError(f"{where}.{err}") from err
    command, args = expand_command(c, env)
    ports: dict[str, int] = {}
    for port in c.get("ports") or []:
        if port.get("protocol", "TCP") != "TCP" or port.get("hostPort"):
            raise UnsupportedError(f"{where}.ports: only TCP container ports without hostPort are supported")
        ports[str(port["containerPort"])] = int(port["containerPort"])
        if "name" in port:
            ports[port["name"]] = int(port["containerPort"])
    seccomp = (setting("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp not in ("RuntimeDefault", "Unconfined"):
        raise UnsupportedError(f"{where}.securityContext.seccompProfile.type {seccomp!r} is not supported")
    caps = sc.get("capabilities") or {}
    limits = (c.get("resources") or {}).get("limits") or {}
    fs_group = pod_sc.get("fsGroup")
    groups = tuple(
        dict.fromkeys([*([fs_group] if fs_group is not None else []), *pod_sc.get("supplementalGroups", [])])
    )
    return ContainerRun(
        kind=kind,
        workload=workload,
        container=c["name"],
        image=c["image"],
        command=tuple(command) if command else None,
        args=tuple(args) if args is not None else None,
        env=env,
        working_dir=c.get("workingDir"),
        run_as_user=setting("runAsUser"),
        run_as_group=setting("runAsGroup"),
        run_as_non_root=bool(setting("runAsNonRoot")),
        groups=tuple(int(g) for g in groups),
        fs_group=fs_group,
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        # Kubernetes' default lets a process gain privileges; so does Docker's.
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
        cap_drop=tuple(caps.get("drop") or ()),
        cap_add=tuple(caps.get("add") or ()),
        seccomp=seccomp,
        memory_limit_bytes=_bytes(limits["memory"], f"{where}.resources.limits.memory") if "memory" in limits else None,
        cpu_limit=parse_quantity(str(limits["cpu"])) if "cpu" in limits else None,
        ports=ports,
        probes=_probes(c, ports, where),
        volumes=_volumes(pod, c, where),
        network=NETWORK[kind],
        deadline_seconds=holder.get("activeDeadlineSeconds"),
        step=step,
        index=index if COMPLETION_INDEX_KEY in pod_object["metadata"].get("labels", {}) else None,
        pod_labels=pod_object["metadata"]["labels"],
        service_account=pod.get("serviceAccountName", "default"),
        service_account_token=pod.get("automountServiceAccountToken", True) is not False,
    )


def run_as_non_root_error(run: ContainerRun, image_user: str) -> str | None:
    """The kubelet's runAsNonRoot check (why it would refuse to start the container), or None.

    With runAsUser set, that UID must not be 0. Without it, the image's USER must be a numeric
    UID other than 0: a user *name* cannot be verified and is refused.
    """
    if not run.run_as_non_root:
        return None
    if run.run_as_user is not None:
        return "runAsNonRoot, but runAsUser is 0" if run.run_as_user == 0 else None
    user = image_user.split(":", 1)[0]
    if not user:
        return "runAsNonRoot, but the image runs as root (no USER) and the pod sets no runAsUser"
    if not user.isdigit():
        return f"runAsNonRoot, but the image's USER {user!r} is a name the kubelet cannot verify"
    return "runAsNonRoot, but the image's USER is 0" if int(user) == 0 else None


def identity_args(run: ContainerRun) -> list[str]:
    """`docker run` arguments for the container's user, primary group and supplementary groups."""
    argv = []
    if run.run_as_user is not None:
        user = str(run.run_as_user) + (f":{run.run_as_group}" if run.run_as_group is not None else "")
        argv += ["--user", user]
    for group in run.groups:
        argv += ["--group-add", str(group)]
    return argv


def docker_args(
    run: ContainerRun,
    *,
    image: str,
    name: str,
    host_paths: Mapping[str, Path],
    publish: bool = False,
) -> list[str]:
    """`docker run` arguments reproducing the container; ``host_paths`` maps each volume name to
    its host directory (emptyDirs of medium Memory become a tmpfs instead)."""
    where = run.title
    if run.service_account_token:
        # A token needs an API server to mean anything; a pod that gets one talks to it.
        raise UnsupportedError(
            f"{where}: the pod mounts a service account token ({run.service_account}); the tier has no API server"
        )
    for volume in run.volumes:
        if volume.config_map is not None:
            raise UnsupportedError(f"{where}: volume {volume.name} is ConfigMap {volume.config_map}, not available")
    argv = ["run", "--name", name, "--pull", "never", "--network", run.network, *identity_args(run)]
    if run.read_only_root:
        argv.append("--read-only")
    for cap in run.cap_drop:
        argv += ["--cap-drop", cap]
    for cap in run.cap_add:
        argv += ["--cap-add", cap]
    if run.no_new_privileges:
        argv += ["--security-opt", "no-new-privileges"]
    if run.seccomp == "Unconfined":
        argv += ["--security-opt", "seccomp=unconfined"]  # RuntimeDefault is Docker's default profile
    if run.memory_limit_bytes is not None:
        # No swap, as on a kubelet node.
        argv += ["--memory", f"{run.memory_limit_bytes}b", "--memory-swap", f"{run.memory_limit_bytes}b"]
    if run.cpu_limit is not None:
        argv += ["--cpus", str(run.cpu_limit)]
    for volume in run.volumes:
        if volume.memory:
            size = f",size={volume.size_limit_bytes}" if volume.size_limit_bytes is not None else ""
            gid = f",gid={run.fs_group}" if run.fs_group is not None else ""
            mode = "2777" if run.fs_group is not None else "1777"
            argv += ["--tmpfs", f"{volume.mount_path}:rw,exec,nosuid,nodev,mode={mode}{gid}{size}"]
        else:
            suffix = ":ro" if volume.read_only else ""
            argv += ["--volume", f"{host_paths[volume.name]}:{volume.mount_path}{suffix}"]
    for key, value in run.env.items():
        argv += ["--env", f"{key}={value}"]
    if run.working_dir:
        argv += ["--workdir", run.working_dir]
    if publish:
        for port in sorted(set(run.ports.values())):
            argv += ["--publish", f"127.0.0.1::{port}/tcp"]  # loopback only, a free host port
    # Kubernetes' command replaces the ENTRYPOINT and drops the image's CMD; Docker takes one
    # executable for --entrypoint, so the rest of the command leads the arguments.
    rest: list[str] = []
    if run.command is not None:
        argv += ["--entrypoint", run.command[0]]
        rest = list(run.command[1:])
    argv.append(image)
    return argv + rest + list(run.args or ())
