"""Container images built from this repository, tagged by their content.

The tag is a hash of exactly the files the build sees (the context minus ``.dockerignore``), so a
code change yields a new tag and rolls the workloads that use it, and nothing else does.
On kind the image is loaded into the nodes (no registry); on a cloud cluster it is pushed.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_command as command

from mlplatform.objects import child_options

__all__ = ["ContainerImage", "ContainerImageArgs", "content_tag"]


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(p, pattern) for p in parts):
            return True
    return False


def content_tag(context: Path, dockerfile: Path) -> str:
    """A 12-hex-digit tag over the Dockerfile and every file of ``context`` the build can see."""
    if not dockerfile.is_file():
        raise FileNotFoundError(f"{dockerfile}: no Dockerfile to build the image from (or set a prebuilt image)")
    ignore_file = context / ".dockerignore"
    patterns = [
        line.strip()
        for line in (ignore_file.read_text().splitlines() if ignore_file.exists() else [])
        if line.strip() and not line.startswith("#")
    ]
    digest = hashlib.sha256()
    digest.update(dockerfile.read_bytes())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        relative = path.relative_to(context).as_posix()
        if _ignored(relative, patterns) or "__pycache__" in relative:
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def prebuilt_version(reference: str) -> str:
    """A label-safe version for a pinned reference: the digest's first 12 hex digits, else the tag."""
    if "@sha256:" in reference:
        return reference.split("@sha256:", 1)[1][:12]
    return reference.rsplit(":", 1)[1][:63]


def _reference(stdout: str) -> str:
    lines = stdout.strip().splitlines()
    if not lines:
        raise ValueError("the image build printed no image reference")
    return lines[-1].strip()


def _project_relative(path: Path) -> str:
    """Commands run in the project directory; absolute paths would differ per machine and churn state."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


# No provenance/SBOM attestations: with Docker's containerd image store (Docker Desktop, Engine 29)
# `docker save` references them without including them and `kind load` fails (kind#3795, #4236).
# Those flags need BuildKit's buildx; without it the legacy builder runs, which writes none anyway.
_BUILD_AND_LOAD = r"""set -euo pipefail
if docker buildx version >/dev/null 2>&1; then
  docker build --provenance=false --sbom=false --tag "$IMAGE" --file "$DOCKERFILE" "$CONTEXT" >&2
else
  echo "docker buildx not found: building with the legacy builder" >&2
  DOCKER_BUILDKIT=0 docker build --tag "$IMAGE" --file "$DOCKERFILE" "$CONTEXT" >&2
fi
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER" >&2
echo "$IMAGE"
"""
# The nodes are x86_64 whatever builds the image (an arm64 laptop included), which needs buildx.
# Tags are immutable in the repository: an image already pushed under this content tag is the
# same image, so skip the push. Either way print the reference with its digest: pods pull exactly
# the bytes that were pushed, and the policy pack can verify the pin.
_BUILD_AND_PUSH = r"""set -euo pipefail
registry="${REPOSITORY%%/*}"
region="$(echo "$registry" | cut -d. -f4)"
repository="${REPOSITORY#*/}"
tag="${IMAGE##*:}"
digest() {
  aws ecr describe-images --region "$region" --repository-name "$repository" \
    --image-ids "imageTag=$tag" --query 'imageDetails[0].imageDigest' --output text
}
if ! found="$(digest 2>/dev/null)" || [ -z "$found" ] || [ "$found" = "None" ]; then
  if ! docker buildx version >/dev/null 2>&1; then
    echo "docker buildx is needed to build the linux/amd64 image for the EKS nodes: install the" \
         "docker-buildx plugin (Docker Desktop ships it)" >&2
    exit 1
  fi
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" >&2
  docker build --platform linux/amd64 --provenance=false --tag "$IMAGE" --file "$DOCKERFILE" "$CONTEXT" >&2
  docker push "$IMAGE" >&2
  found="$(digest)"
fi
echo "$IMAGE@$found"
"""


@dataclass(frozen=True)
class ContainerImageArgs:
    name: str  # e.g. "bookstore-recommender"
    context: Path
    dockerfile: Path
    kind_cluster: str | None = None  # load into this kind cluster's nodes
    # What identifies the cluster the image is loaded into (kind): a replaced cluster has new,
    # empty nodes, so the load must run again. Registries outlive clusters: pushes ignore it.
    cluster_identity: pulumi.Input[str] | None = None
    repository: pulumi.Output[str] | None = None  # or push to this registry repository
    prebuilt: str = ""  # use this pinned reference as-is; nothing is built
    push_environment: Mapping[str, str] = field(default_factory=dict)  # e.g. AWS_PROFILE for the push


class ContainerImage(pulumi.ComponentResource):
    """An image reference workloads can use once it exists where their nodes pull from.

    Guarantees: the tag is the content hash (never ``latest``); with ``prebuilt`` nothing is built;
    ``image_ref`` resolves only after the build and load/push succeeded; a pushed image is referenced
    by digest (``repo:tag@sha256:...``); on kind the image is loaded again into a replaced cluster.
    """

    def __init__(self, name: str, args: ContainerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:ContainerImage", name, None, opts)
        self.tag = prebuilt_version(args.prebuilt) if args.prebuilt else content_tag(args.context, args.dockerfile)
        if args.prebuilt:
            self.image_ref: pulumi.Output[str] = pulumi.Output.from_input(args.prebuilt)
            self.register_outputs({"image_ref": self.image_ref})
            return
        image: pulumi.Input[str]
        target: dict[str, pulumi.Input[str]]
        triggers: list[pulumi.Input[str]]
        if args.repository is not None:
            image = args.repository.apply(lambda repo: f"{repo}:{self.tag}")
            script, target = _BUILD_AND_PUSH, {"REPOSITORY": args.repository, **args.push_environment}
            triggers = [image]
        elif args.kind_cluster is not None:
            # No registry on kind: nodes run what `kind load` put into them, by tag (a digest names
            # registry content). Scanners' "image by digest" / "pull policy Always" checks
            # (checkov CKV_K8S_43, CKV_K8S_15) do not apply to these images.
            image = f"{args.name}:{self.tag}"
            script, target = _BUILD_AND_LOAD, {"KIND_CLUSTER": args.kind_cluster}
            triggers = [image] if args.cluster_identity is None else [image, args.cluster_identity]
        else:
            raise ValueError(f"ContainerImage {name}: give kind_cluster, repository or prebuilt")
        build = command.local.Command(
            f"{name}-build",
            create=script,
            interpreter=["/bin/bash", "-c"],
            environment={
                "IMAGE": image,
                **target,
                "DOCKERFILE": _project_relative(args.dockerfile),
                "CONTEXT": _project_relative(args.context),
            },
            triggers=triggers,
            opts=child_options(opts, self),
        )
        # What the script printed last: the loaded tag, or the pushed reference with its digest.
        # Resolves only once the build (and load or push) succeeded.
        self.image_ref = build.stdout.apply(_reference)
        self.register_outputs({"image_ref": self.image_ref})
