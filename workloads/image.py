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


def _project_relative(path: Path) -> str:
    """Commands run in the project directory; absolute paths would differ per machine and churn state."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


# No provenance/SBOM attestations: with Docker's containerd image store (Docker Desktop, Engine 29)
# `docker save` references them without including them and `kind load` fails (kind#3795, #4236).
_BUILD_AND_LOAD = r"""set -euo pipefail
docker build --provenance=false --sbom=false --tag "$IMAGE" --file "$DOCKERFILE" "$CONTEXT" >&2
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER" >&2
echo "$IMAGE"
"""
# The nodes are x86_64 whatever builds the image (an arm64 laptop included). Tags are immutable in
# the repository: an image already pushed under this content tag is the same image, so skip it.
_BUILD_AND_PUSH = r"""set -euo pipefail
registry="${REPOSITORY%%/*}"
region="$(echo "$registry" | cut -d. -f4)"
repository="${REPOSITORY#*/}"
if aws ecr describe-images --region "$region" --repository-name "$repository" \
     --image-ids "imageTag=${IMAGE##*:}" >/dev/null 2>&1; then
  echo "$IMAGE"; exit 0
fi
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" >&2
docker build --platform linux/amd64 --provenance=false --tag "$IMAGE" --file "$DOCKERFILE" "$CONTEXT" >&2
docker push "$IMAGE" >&2
echo "$IMAGE"
"""


@dataclass(frozen=True)
class ContainerImageArgs:
    name: str  # e.g. "bookstore-recommender"
    context: Path
    dockerfile: Path
    kind_cluster: str | None = None  # load into this kind cluster's nodes
    repository: pulumi.Output[str] | None = None  # or push to this registry repository
    prebuilt: str = ""  # use this pinned reference as-is; nothing is built
    push_environment: Mapping[str, str] = field(default_factory=dict)  # e.g. AWS_PROFILE for the push


class ContainerImage(pulumi.ComponentResource):
    """An image reference workloads can use once it exists where their nodes pull from.

    Guarantees: the tag is the content hash (never ``latest``); with ``prebuilt`` nothing is built;
    ``image_ref`` resolves only after the build and load/push succeeded.
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
        if args.repository is not None:
            image = args.repository.apply(lambda repo: f"{repo}:{self.tag}")
            script, target = _BUILD_AND_PUSH, {"REPOSITORY": args.repository, **args.push_environment}
        elif args.kind_cluster is not None:
            image = f"{args.name}:{self.tag}"
            script, target = _BUILD_AND_LOAD, {"KIND_CLUSTER": args.kind_cluster}
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
            triggers=[image],
            opts=child_options(opts, self),
        )
        # Resolves only once the build (and load or push) succeeded.
        self.image_ref = pulumi.Output.all(build.stdout, image).apply(lambda parts: str(parts[1]))
        self.register_outputs({"image_ref": self.image_ref})
