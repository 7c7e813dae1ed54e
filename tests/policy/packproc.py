"""Drive the real policy pack process the way the Pulumi CLI does, over gRPC.

The CLI starts ``python -u -m pulumi.policy <engine-address> .`` in the pack directory, reads the
Analyzer's port from the first stdout line, then calls GetAnalyzerInfo, Configure, Analyze for
each resource and AnalyzeStack once. Properties travel as a protobuf Struct in wire form
(camelCase keys, numbers as doubles, secrets wrapped in the secret signature); resource
references are replaced by their URN first, as the engine does.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, engine_pb2_grpc

from mlplatform.capture import REPO_ROOT, RESOURCE_SIG, SIG_KEY, CapturedResource

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
START_TIMEOUT_S = 30.0
CAPTURE_TIMEOUT_S = 60.0  # a normal capture takes ~2 s
RPC_TIMEOUT_S = 20.0
LEVELS = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.REMEDIATE: "remediate",
    analyzer_pb2.DISABLED: "disabled",
}


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    level: str
    urn: str
    message: str


class FakeEngine(engine_pb2_grpc.EngineServicer):
    """Just enough of the engine for a pack's log calls: records them."""

    def __init__(self) -> None:
        self.logs: list[str] = []

    def Log(self, request: Any, context: Any) -> empty_pb2.Empty:  # noqa: N802 - gRPC method name
        self.logs.append(request.message)
        return empty_pb2.Empty()


@dataclass
class PackProcess:
    analyzer: analyzer_pb2_grpc.AnalyzerStub
    engine: FakeEngine
    stderr_path: Path
    defaults: dict[str, analyzer_pb2.PolicyConfig] = field(default_factory=dict)

    def info(self) -> analyzer_pb2.AnalyzerInfo:
        return self.analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=RPC_TIMEOUT_S)

    def configure(self, overrides: Mapping[str, tuple[str | None, Mapping[str, Any]]] | None = None) -> None:
        """Send every policy's config as the CLI does (defaults, then ``name -> (level, properties)``)."""
        configs = {
            name: analyzer_pb2.PolicyConfig(enforcementLevel=c.enforcementLevel, properties=c.properties)
            for name, c in self.defaults.items()
        }
        for name, (level, props) in (overrides or {}).items():
            if level is not None:
                configs[name].enforcementLevel = next(k for k, v in LEVELS.items() if v == level)
            configs[name].properties.update(dict(props))
        self.analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=configs), timeout=RPC_TIMEOUT_S)

    def analyze_all(self, resources: Iterable[CapturedResource]) -> list[Diagnostic]:
        """Analyze for each resource, then AnalyzeStack over all of them: every diagnostic returned."""
        resources = list(resources)
        out: list[Diagnostic] = []
        for r in resources:
            request = analyzer_pb2.AnalyzeRequest(type=r.type, name=r.name, urn=r.urn, properties=wire_struct(r.inputs))
            out += _diagnostics(self.analyzer.Analyze(request, timeout=RPC_TIMEOUT_S), r.urn)
        stack = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type,
                    name=r.name,
                    urn=r.urn,
                    parent=r.parent,
                    dependencies=list(r.dependencies),
                    properties=wire_struct(r.inputs),
                )
                for r in resources
            ]
        )
        out += _diagnostics(self.analyzer.AnalyzeStack(stack, timeout=RPC_TIMEOUT_S), "")
        return out


def _diagnostics(response: analyzer_pb2.AnalyzeResponse, default_urn: str) -> list[Diagnostic]:
    return [
        Diagnostic(d.policyName, LEVELS[d.enforcementLevel], d.urn or default_urn, d.message)
        for d in response.diagnostics
    ]


_CAPTURE_SCRIPT = """
import dataclasses, json, sys
from mlplatform.capture import capture_stack
with open(sys.argv[2], "w") as out:
    overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    json.dump([dataclasses.asdict(r) for r in capture_stack(sys.argv[1], overrides).resources], out)
"""


def capture_in_subprocess(stack: str, overrides: dict[str, object] | None = None) -> list[CapturedResource]:
    """``capture_stack(stack)`` in a child process: bounded in time (a hung mocks run fails the test
    instead of the whole suite) and isolated from the mocks state of this process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "resources.json"
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CAPTURE_SCRIPT, stack, str(out), json.dumps(overrides or {})],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=CAPTURE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise AssertionError(f"capture_stack({stack!r}) did not finish within {CAPTURE_TIMEOUT_S}s") from err
        assert done.returncode == 0, f"capture_stack({stack!r}) failed:\n{done.stderr[-3000:]}"
        rows = json.loads(out.read_text())
    return [CapturedResource(**{**r, "dependencies": tuple(r["dependencies"])}) for r in rows]


def _default_config(policy: analyzer_pb2.PolicyInfo) -> analyzer_pb2.PolicyConfig:
    """A policy's level and its schema's defaults: what the CLI sends when the user configures nothing."""
    schema = json_format.MessageToDict(policy.configSchema.properties)
    config = analyzer_pb2.PolicyConfig(enforcementLevel=policy.enforcementLevel)
    config.properties.update({key: prop["default"] for key, prop in schema.items() if "default" in prop})
    return config


def _strip_references(value: Any) -> Any:
    """Resource references -> their URN (the engine never sends a reference to an analyzer)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == RESOURCE_SIG:
            return value["urn"]
        return {k: _strip_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_references(v) for v in value]
    return value


def wire_struct(inputs: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(_strip_references(dict(inputs)), struct)
    return struct


def _read_port(proc: subprocess.Popen[bytes], stderr_path: Path) -> int:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_TIMEOUT_S
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            raise TimeoutError(f"no port from the pack within {START_TIMEOUT_S}s: {stderr_path.read_text()[-2000:]}")
        chunk = os.read(proc.stdout.fileno(), 64)
        if not chunk:
            raise RuntimeError(
                f"pack exited ({proc.poll()}) before printing its port: {stderr_path.read_text()[-2000:]}"
            )
        line += chunk
    first = line.split(b"\n", 1)[0].decode()
    assert first.isdigit(), f"first stdout line must be the port, got {first!r}"
    return int(first)


@contextmanager
def pack_process(*, stack: str = "dev") -> Iterator[PackProcess]:
    """Start the pack in ``policy/`` against a fake engine; always stop both."""
    engine = FakeEngine()
    engine_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    engine_pb2_grpc.add_EngineServicer_to_server(engine, engine_server)
    engine_port = engine_server.add_insecure_port("127.0.0.1:0")
    engine_server.start()
    env = {
        **os.environ,
        "PULUMI_CONFIG": "{}",
        "PULUMI_PROJECT": "ml-platform",
        "PULUMI_STACK": stack,
        "PULUMI_DRY_RUN": "true",
    }
    with tempfile.NamedTemporaryFile(prefix="policy-pack-", suffix=".stderr", delete=False) as stderr:
        stderr_path = Path(stderr.name)
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.policy", f"127.0.0.1:{engine_port}", "."],
            cwd=POLICY_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    channel = None
    try:
        port = _read_port(proc, stderr_path)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_S)
        pack = PackProcess(analyzer_pb2_grpc.AnalyzerStub(channel), engine, stderr_path)
        pack.defaults = {p.name: _default_config(p) for p in pack.info().policies}
        yield pack
    finally:
        if channel is not None:
            channel.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        engine_server.stop(grace=None)
        stderr_path.unlink(missing_ok=True)
