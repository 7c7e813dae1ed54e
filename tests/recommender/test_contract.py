"""The fixed contract with the platform: constants, container image settings, pinned deps."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from recommender import contract

PKG = Path(__file__).resolve().parents[2] / "recommender"


def test_contract_values() -> None:
    assert (contract.DEFAULT_PORT, contract.READY_PATH, contract.LIVE_PATH, contract.METRICS_PATH) == (
        8080, "/ready", "/live", "/metrics",
    )  # fmt: skip
    assert (contract.ENV_REGISTRY, contract.ENV_MODEL) == ("RECOMMENDER_REGISTRY", "RECOMMENDER_MODEL")
    assert contract.RUN_AS_UID == 10001
    codes = [contract.EXIT_OK, contract.EXIT_INTERNAL, contract.EXIT_BAD_INPUT, contract.EXIT_GATE_FAILED,
             contract.EXIT_REGISTRY]  # fmt: skip
    assert len(set(codes)) == len(codes)


def test_contract_imports_nothing_heavy() -> None:
    heavy = "('numpy', 'scipy', 'uvicorn')"
    code = f"import sys, recommender.contract; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dockerfile_settings() -> None:
    text = (PKG / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(froms) >= 2  # multi-stage
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base.group(1))
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r"^WORKDIR /app$", text, re.MULTILINE)
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["python", "-m", "recommender"]' in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "COPY . /app/recommender" in text  # build context is the package directory itself
    ignore = (PKG / ".dockerignore").read_text().split()
    assert {"**/__pycache__", "tests"} <= set(ignore)


def test_runtime_requirements_pinned() -> None:
    lines = [ln.split("#")[0].strip() for ln in (PKG / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", r) for r in reqs)
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"numpy", "scipy", "uvicorn", "prometheus-client", "orjson"} <= names
    assert "pulumi" not in " ".join(names)


def test_no_pulumi_anywhere_in_the_package() -> None:
    for path in PKG.rglob("*.py"):
        assert "pulumi" not in path.read_text().lower(), path
