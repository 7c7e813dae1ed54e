"""Container hygiene: requests and limits, GPU limits equal to requests, pinned images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .model import as_map
from .pods import PodTemplate, containers

__all__ = ["GPU_RESOURCE", "gpu_findings", "image_findings", "parse_quantity", "requests_limits_findings"]

GPU_RESOURCE = "nvidia.com/gpu"
# The pack runs in its own virtualenv without the program's modules, so it cannot share
# mlplatform.quantity: this is the same unit table, built rather than spelled out.
_SUFFIXES = {
    **{suffix: Decimal(2 ** (10 * (i + 1))) for i, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{suffix: Decimal(10) ** exp for suffix, exp in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)},
}


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (``"1"``, ``1.0`` as the engine sends numbers, ``"500m"``, ``"2Gi"``) or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str) or not value:
        return None
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if value.endswith(suffix):
            number, factor = value[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, factor = value, Decimal(1)
    try:
        return Decimal(number) * factor
    except InvalidOperation:
        return None


def requests_limits_findings(template: PodTemplate, required: Sequence[str] = ("cpu", "memory")) -> list[str]:
    """Containers (init and regular) missing a request or a limit for any of ``required``."""
    found = []
    for field_name, container in containers(template.spec, include_ephemeral=False):
        resources = as_map(container.get("resources"))
        for section in ("requests", "limits"):
            present = as_map(resources.get(section))
            missing = [r for r in required if r not in present]
            if missing:
                found.append(f"{field_name}[{container.get('name')}].resources.{section}: set {', '.join(missing)}")
    return found


def gpu_findings(template: PodTemplate) -> list[str]:
    """Containers whose ``nvidia.com/gpu`` limit is missing or differs from the request
    (extended resources cannot be overcommitted: the API server rejects a mismatch)."""
    found = []
    for field_name, container in containers(template.spec, include_ephemeral=False):
        resources = as_map(container.get("resources"))
        requests: Mapping[str, Any] = as_map(resources.get("requests"))
        limits: Mapping[str, Any] = as_map(resources.get("limits"))
        if GPU_RESOURCE not in requests and GPU_RESOURCE not in limits:
            continue
        where = f"{field_name}[{container.get('name')}].resources"
        request, limit = requests.get(GPU_RESOURCE), limits.get(GPU_RESOURCE)
        if request is None or limit is None:
            have, need = ("limits", "requests") if request is None else ("requests", "limits")
            value = limit if request is None else request
            found.append(f"{where}: set {need}.{GPU_RESOURCE} equal to {have}.{GPU_RESOURCE} ({value})")
        elif parse_quantity(request) != parse_quantity(limit) or parse_quantity(request) is None:
            found.append(f"{where}: set limits.{GPU_RESOURCE} ({limit}) equal to requests.{GPU_RESOURCE} ({request})")
    return found


def image_pinned(image: str) -> bool:
    """A digest, or a tag other than ``latest`` (a ``:port`` in the registry host is not a tag)."""
    if "@" in image:
        return image.rpartition("@")[2].startswith("sha256:")
    last = image.rpartition("/")[2]
    tag = last.rpartition(":")[2] if ":" in last else ""
    return bool(tag) and tag != "latest"


def image_findings(template: PodTemplate) -> list[str]:
    found = []
    for field_name, container in containers(template.spec):
        image = container.get("image")
        if not isinstance(image, str) or not image_pinned(image):
            found.append(
                f"{field_name}[{container.get('name')}].image: {image!r} is not pinned; "
                "use a version tag (not latest) or a @sha256 digest"
            )
    return found
