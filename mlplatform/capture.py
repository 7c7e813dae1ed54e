"""Run the Pulumi program offline under mocks and record every resource it registers.

This is the raw material for ``python -m mlplatform.render``, the schema-validation tests and
the policy-pack tests: each ``CapturedResource`` is what the engine would have received
(type token, name, parent, and the input properties in wire form: camelCase keys, numbers
as doubles, secrets wrapped).

The mocks answer every invoke the program makes and raise on any other, so a new invoke
cannot silently come back empty.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from .config import NAMESPACE

__all__ = [
    "REPO_ROOT",
    "SECRET_SIG",
    "Capture",
    "CapturedResource",
    "PlatformMocks",
    "capture_stack",
    "stack_file_config",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "ml-platform"
# Pulumi's wire signature for a secret value, and for a resource reference.
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
SIG_KEY = "4dabf18193072939515e22adb298388d"

FAKE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: mock, cluster: {server: "https://127.0.0.1:6443"}}]
contexts: [{name: mock, context: {cluster: mock, user: mock}}]
current-context: mock
users: [{name: mock, user: {token: mock-token}}]
"""


def plain(value: Any) -> Any:
    """Wire form -> plain data: secrets unwrapped, references to their URN, integral doubles to int."""
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            return plain(value.get("value"))
        if sig == RESOURCE_SIG:
            return value.get("urn")
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class CapturedResource:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]  # wire form, as the engine receives it
    dependencies: tuple[str, ...] = ()
    provider: str = ""

    @property
    def props(self) -> dict[str, Any]:
        """Inputs as plain data (secrets unwrapped, whole numbers as int)."""
        return plain(self.inputs)

    @property
    def is_kubernetes_object(self) -> bool:
        return (
            self.custom
            and self.type.startswith("kubernetes:")
            and not self.type.startswith(("kubernetes:helm.sh/", "pulumi:providers:"))
        )

    def manifest(self) -> dict[str, Any]:
        """The Kubernetes object this resource applies (only for ``is_kubernetes_object``)."""
        props = self.props
        props.pop("__defaults", None)
        return props


@dataclass
class Capture:
    stack: str
    resources: list[CapturedResource] = field(default_factory=list)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (token, args) in call order
    result: Any = None  # whatever the program function returned (e.g. the Platform object)

    def of_type(self, type_token: str) -> list[CapturedResource]:
        return [r for r in self.resources if r.type == type_token]

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        return [r.manifest() for r in self.resources if r.is_kubernetes_object]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.kubernetes_objects() if m.get("kind") == kind]

    def named(self, name: str) -> CapturedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A MockMonitor that keeps every RegisterResource request, in order."""

    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.captured: list[CapturedResource] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.captured.append(
                CapturedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=json_format.MessageToDict(request.object),
                    dependencies=tuple(request.dependencies),
                    provider=request.provider,
                )
            )
        return response


# Outputs the mocks add to a resource's inputs, by type: what the real provider would return
# that the program reads back.
OutputFiller = Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]


def _command_outputs(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    """What each of the program's scripts prints on success (its last line is what it yields)."""
    script = str(args.inputs.get("create", ""))
    env = plain(args.inputs.get("environment") or {})  # a secret anywhere in it wraps it whole
    stdout = ""
    if script.rstrip().endswith("printf '%s' \"$KUBECONFIG_DATA\""):
        stdout = env["KUBECONFIG_DATA"]  # a check that hands on the kubeconfig it was given
    elif "kubeconfig" in script:
        stdout = FAKE_KUBECONFIG
    elif "docker push" in script:  # the pushed reference, pinned by its digest
        stdout = f"{env['IMAGE']}@sha256:{hashlib.sha256(env['IMAGE'].encode()).hexdigest()}\n"
    elif "kind load" in script:
        stdout = f"{env['IMAGE']}\n"
    return {"stdout": stdout, "stderr": ""}


OUTPUT_FILLERS: dict[str, OutputFiller] = {
    "command:local:Command": _command_outputs,
    "random:index/randomPassword:RandomPassword": lambda a: {"result": "mock-password-" + "x" * 16},
    # AWS (eks stack): computed fields the program reads back, in wire (camelCase) names.
    "aws:eks/cluster:Cluster": lambda a: {
        "endpoint": "https://0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com",
        "certificateAuthority": {"data": "bW9jay1jYQ=="},
        "arn": f"arn:aws:eks:us-east-1:123456789012:cluster/{a.inputs.get('name', a.name)}",
        "createdAt": "2026-01-01T00:00:00Z",
        "vpcConfig": {
            **(a.inputs.get("vpcConfig") or {}),
            "clusterSecurityGroupId": "sg-0eksclustermock",
            "vpcId": "vpc-mock",
        },
    },
    "aws:iam/role:Role": lambda a: {
        "name": a.inputs.get("name", a.name),
        "arn": f"arn:aws:iam::123456789012:role/{a.inputs.get('name', a.name)}",
    },
    "aws:iam/policy:Policy": lambda a: {
        "arn": f"arn:aws:iam::123456789012:policy/{a.inputs.get('name', a.name)}",
    },
    "aws:eks/nodeGroup:NodeGroup": lambda a: {
        "nodeGroupName": a.inputs.get("nodeGroupName", a.name),
        "resources": [{"autoscalingGroups": [{"name": f"eks-{a.name}-asg"}], "remoteAccessSecurityGroupId": ""}],
    },
    "aws:ecr/repository:Repository": lambda a: {
        "repositoryUrl": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{a.inputs.get('name', a.name)}",
        "arn": f"arn:aws:ecr:us-east-1:123456789012:repository/{a.inputs.get('name', a.name)}",
    },
}
# Invoke token -> answer. Anything else raises: an unanswered invoke would return empty fields.
INVOKE_ANSWERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    # kind: the model-store directories, made on every run; the script prints the store's path.
    "command:local:run": lambda args: {
        "stdout": (args.get("environment") or {}).get("MODEL_STORE", "") + "\n",
        "stderr": "",
        "command": args.get("command", ""),
    },
    # AWS (eks stack): an account in us-east-1, deployed by an assumed role (the harder case for
    # EKS access entries, which need the role ARN, not the STS session ARN).
    "aws:index/getAvailabilityZones:getAvailabilityZones": lambda args: {
        "id": "us-east-1",
        "names": ["us-east-1a", "us-east-1b", "us-east-1c"],
        "zoneIds": ["use1-az1", "use1-az2", "use1-az4"],
        "groupNames": ["us-east-1", "us-east-1", "us-east-1"],
    },
    "aws:index/getCallerIdentity:getCallerIdentity": lambda args: {
        "id": "123456789012",
        "accountId": "123456789012",
        "arn": "arn:aws:sts::123456789012:assumed-role/PlatformAdmin/deployer",
        "userId": "AROAEXAMPLEROLEID:deployer",
    },
    "aws:iam/getSessionContext:getSessionContext": lambda args: {
        "id": args["arn"],
        "arn": args["arn"],
        **(
            {
                "issuerArn": "arn:aws:iam::123456789012:role/" + args["arn"].split("/")[1],
                "issuerName": args["arn"].split("/")[1],
                "sessionName": args["arn"].split("/")[2],
            }
            if ":assumed-role/" in args["arn"]
            else {"issuerArn": args["arn"], "issuerName": args["arn"].rsplit("/", 1)[-1]}
        ),
    },
    "aws:index/getPartition:getPartition": lambda args: {
        "id": "aws",
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
    },
    "aws:index/getRegion:getRegion": lambda args: {
        "id": "us-east-1",
        "name": "us-east-1",
        "region": "us-east-1",
        "endpoint": "ec2.us-east-1.amazonaws.com",
        "description": "US East (N. Virginia)",
    },
}


# What a preview cannot know: these run only on `pulumi up` (e.g. `kind create cluster`).
RUN_ONLY_ON_UP = frozenset({"command:local:Command"})


class PlatformMocks(pulumi_mocks.Mocks):
    """Mocks for the whole program: resource outputs echo inputs plus provider-computed fields.

    With ``preview`` the outputs of resources that only act on ``up`` stay unknown, as in a real
    ``pulumi preview``: the kind cluster's kubeconfig, for one.
    """

    preview = False  # class default: subclasses that override __init__ still behave as `up`

    def __init__(self, *, preview: bool = False) -> None:
        super().__init__()
        self.preview = preview

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        filler = OUTPUT_FILLERS.get(args.typ)
        if filler is not None and not (self.preview and args.typ in RUN_ONLY_ON_UP):
            outputs.update(filler(args))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        answer = INVOKE_ANSWERS.get(args.token)
        if answer is None:
            raise NotImplementedError(
                f"the mocks do not answer invoke {args.token!r}: add it to mlplatform.capture.INVOKE_ANSWERS"
            )
        # Subclasses may skip __init__; the record still starts empty for them.
        self.__dict__.setdefault("invokes", []).append((args.token, dict(args.args)))
        return answer(dict(args.args)), []


def _config_value(value: Any) -> str:
    """A stack-file value as the CLI hands it to the program (strings; arrays/objects as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        if isinstance(value, dict) and "secure" in value:
            raise ValueError("secret config values cannot be rendered offline")
        return json.dumps(value)
    return str(value)


def stack_file_config(stack: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """The ``config:`` of ``Pulumi.<stack>.yaml`` as full keys -> string values."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.name} (stacks: {', '.join(known_stacks(root))})")
    data = yaml.safe_load(path.read_text()) or {}
    return {key: _config_value(value) for key, value in (data.get("config") or {}).items()}


def known_stacks(root: Path = REPO_ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def run_under_mocks(
    program: Callable[[], Any],
    *,
    stack: str,
    config: Mapping[str, str],
    mocks: pulumi_mocks.Mocks | None = None,
    preview: bool = False,
) -> Capture:
    """Run ``program`` once under mocks and record it. By default as ``pulumi up`` (every output
    known, so assertions inside ``apply`` run); ``preview=True`` leaves up-only outputs unknown."""
    mocks = mocks or PlatformMocks(preview=preview)
    monitor = RecordingMonitor(mocks)
    # Each run gets its own event loop: a caller (an async test, a server) may have closed or
    # unset the thread's loop, and the Pulumi runtime schedules everything on it.
    asyncio.set_event_loop(asyncio.new_event_loop())
    # A previous run's root stack (another stack name) must not parent this run's resources.
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config))
    capture = Capture(stack=stack)

    def body() -> None:
        capture.result = program()

    pulumi.runtime.test(body)()
    capture.resources = list(monitor.captured)
    capture.invokes = list(mocks.__dict__.get("invokes", []))
    return capture


def capture_stack(stack: str, overrides: Mapping[str, Any] | None = None) -> Capture:
    """Run the real program for ``Pulumi.<stack>.yaml`` (plus ``overrides``, keys with or
    without the ``ml-platform:`` prefix) and return every resource it registers."""
    # The project's composition root (what `pulumi up` runs), not a platform module: it imports
    # the apps, which the platform must not.
    from stack import build

    config = stack_file_config(stack)
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{NAMESPACE}:{key}"
        config[full] = _config_value(value)
    return run_under_mocks(lambda: build(stack), stack=stack, config=config)
