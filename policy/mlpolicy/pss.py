"""The Pod Security Standards *restricted* profile (baseline controls included), as pure checks.

Follows the Kubernetes "Pod Security Standards" page control by control. Each finding names the
field and the value to set, so a violation message is a to-do list. Containers means init,
regular and ephemeral containers, as Pod Security Admission reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import as_list, as_map, get_path
from .pods import PodTemplate, containers

__all__ = ["restricted_findings"]

ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _is_true(value: Any) -> bool:
    return value is True


def _nonzero(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value != 0


def _security_context_findings(where: str, ctx: Mapping[str, Any]) -> list[str]:
    """Controls that apply alike to the pod's and to each container's securityContext."""
    found: list[str] = []
    if _is_true(get_path(ctx, "windowsOptions", "hostProcess")):
        found.append(f"{where}.securityContext.windowsOptions.hostProcess: remove it or set false")
    run_as_user = ctx.get("runAsUser")
    if run_as_user is not None and not _nonzero(run_as_user):
        found.append(f"{where}.securityContext.runAsUser: 0 is root; set a non-zero UID (e.g. 10001)")
    se_linux = as_map(ctx.get("seLinuxOptions"))
    if se_linux.get("type", "") not in SELINUX_TYPES:
        found.append(
            f"{where}.securityContext.seLinuxOptions.type: use one of container_t, container_init_t, "
            "container_kvm_t, container_engine_t or leave it unset"
        )
    for key in ("user", "role"):
        if se_linux.get(key, ""):
            found.append(f"{where}.securityContext.seLinuxOptions.{key}: must be unset")
    seccomp = get_path(ctx, "seccompProfile", "type")
    if seccomp is not None and seccomp not in SECCOMP_TYPES:
        found.append(f"{where}.securityContext.seccompProfile.type: {seccomp!r} is not allowed; use RuntimeDefault")
    apparmor = get_path(ctx, "appArmorProfile", "type")
    if apparmor is not None and apparmor not in APPARMOR_TYPES:
        found.append(
            f"{where}.securityContext.appArmorProfile.type: {apparmor!r} is not allowed; "
            "use RuntimeDefault or Localhost"
        )
    return found


def _container_findings(where: str, container: Mapping[str, Any], pod_ctx: Mapping[str, Any]) -> list[str]:
    ctx = as_map(container.get("securityContext"))
    found = _security_context_findings(where, ctx)
    if _is_true(ctx.get("privileged")):
        found.append(f"{where}.securityContext.privileged: set false (or remove it)")
    if ctx.get("allowPrivilegeEscalation") is not False:
        found.append(f"{where}.securityContext.allowPrivilegeEscalation: set false")
    if ctx.get("procMount", "Default") not in ("Default", None):
        found.append(f"{where}.securityContext.procMount: remove it or set Default")
    caps = as_map(ctx.get("capabilities"))
    if "ALL" not in [str(c) for c in as_list(caps.get("drop"))]:
        found.append(f"{where}.securityContext.capabilities.drop: must include ALL")
    extra = [str(c) for c in as_list(caps.get("add")) if c != "NET_BIND_SERVICE"]
    if extra:
        found.append(f"{where}.securityContext.capabilities.add: remove {', '.join(extra)} (only NET_BIND_SERVICE)")
    run_as_non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
    if run_as_non_root is not True:
        found.append(f"{where}.securityContext.runAsNonRoot: set true (here or in the pod securityContext)")
    seccomp = get_path(ctx, "seccompProfile", "type") or get_path(pod_ctx, "seccompProfile", "type")
    if seccomp is None:
        found.append(f"{where}: set securityContext.seccompProfile.type RuntimeDefault (here or on the pod)")
    for port in as_list(container.get("ports")):
        if _nonzero(as_map(port).get("hostPort")):
            found.append(f"{where}.ports: remove hostPort {as_map(port).get('hostPort')!r}")
    return found


def restricted_findings(template: PodTemplate) -> list[str]:
    """Every way ``template`` breaks the restricted profile, each phrased as the change to make."""
    spec, found = template.spec, []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if _is_true(spec.get(key)):
            found.append(f"spec.{key}: set false (or remove it)")
    pod_ctx = as_map(spec.get("securityContext"))
    found += _security_context_findings("spec", pod_ctx)
    for sysctl in as_list(pod_ctx.get("sysctls")):
        name = as_map(sysctl).get("name")
        if name not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: remove {name!r} (only the safe set is allowed)")
    for volume in as_list(spec.get("volumes")):
        volume = as_map(volume)
        kinds = [k for k in volume if k != "name"]
        bad = [k for k in kinds if k not in ALLOWED_VOLUME_TYPES]
        if bad:
            found.append(
                f"spec.volumes[{volume.get('name')}]: {', '.join(bad)} is not allowed; use a "
                "persistentVolumeClaim, configMap, secret, emptyDir, projected, csi or ephemeral volume"
            )
    for key, value in as_map(template.metadata.get("annotations")).items():
        if key.startswith(APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            found.append(f"metadata.annotations[{key}]: use runtime/default or localhost/<profile>")
    for field_name, container in containers(spec):
        found += _container_findings(f"{field_name}[{container.get('name')}]", container, pod_ctx)
    return found
