"""scripts/install-promtool.sh, run for real by bash against stub `apt-get`, `id` and `sudo` that
record what they were asked to do (PATH holds only the stubs and the few tools the script uses)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install-promtool.sh"
TOOLS = ("bash", "tee", "chmod", "rm", "mktemp", "tail", "env", "cat", "true")
APT_GET = """#!/bin/bash
echo "apt-get $* policy=$( [ -x "$POLICY_RC_D" ] && cat "$POLICY_RC_D" | tail -n 1 )" >> "$STUB_LOG"
if [ "$1" = install ]; then
  [ "$FAKE_APT" = fail ] && { echo "E: Unable to locate package prometheus"; exit 100; }
  printf '#!/bin/sh\\n' > "$STUB_BIN/promtool"; chmod +x "$STUB_BIN/promtool"
fi
"""
ID = '#!/bin/bash\necho "$FAKE_UID"\n'
SUDO = """#!/bin/bash
echo "sudo $*" >> "$STUB_LOG"
[ "$FAKE_SUDO" = yes ] || exit 1
shift  # -n
[ $# -eq 0 ] || exec "$@"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, text in (("apt-get", APT_GET), ("id", ID), ("sudo", SUDO)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": str(bin_dir),
        "STUB_BIN": str(bin_dir),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "POLICY_RC_D": str(tmp_path / "policy-rc.d"),
        "FAKE_UID": "0",
        "FAKE_SUDO": "no",
        "FAKE_APT": "ok",
    }


def install(env: dict[str, str], **fake: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    run = subprocess.run(
        [shutil.which("bash") or "bash", str(SCRIPT)], env={**env, **fake}, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    log = Path(env["STUB_LOG"])
    return run, log.read_text().splitlines() if log.exists() else []


def test_as_root_it_installs_the_package_with_services_held_off(env: dict[str, str]) -> None:
    run, calls = install(env)
    assert run.returncode == 0, run.stderr
    assert calls == [
        "apt-get update -qq policy=exit 101",
        "apt-get install -y -qq --no-install-recommends prometheus policy=exit 101",
    ]
    assert not os.path.exists(env["POLICY_RC_D"])  # removed again: it was not there before


def test_an_existing_policy_is_left_alone(env: dict[str, str]) -> None:
    Path(env["POLICY_RC_D"]).write_text("#!/bin/sh\nexit 0\n")
    Path(env["POLICY_RC_D"]).chmod(0o755)
    run, calls = install(env)
    assert run.returncode == 0 and calls[-1].endswith("policy=exit 0")
    assert Path(env["POLICY_RC_D"]).read_text() == "#!/bin/sh\nexit 0\n"


def test_without_root_it_uses_passwordless_sudo(env: dict[str, str]) -> None:
    run, calls = install(env, FAKE_UID="1001", FAKE_SUDO="yes")
    assert run.returncode == 0, run.stderr
    assert (
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus" in calls
    )


def test_without_root_or_sudo_it_installs_nothing_and_says_so(env: dict[str, str]) -> None:
    run, calls = install(env, FAKE_UID="1001")
    assert run.returncode == 1 and "needs root or passwordless sudo" in run.stderr
    assert not any(c.startswith("apt-get") for c in calls)


def test_a_failed_install_fails_and_shows_why(env: dict[str, str]) -> None:
    run, _ = install(env, FAKE_APT="fail")
    assert run.returncode != 0 and "Unable to locate package prometheus" in run.stderr
    assert not os.path.exists(env["POLICY_RC_D"])


def test_nothing_happens_when_promtool_is_there(env: dict[str, str]) -> None:
    promtool = Path(env["STUB_BIN"]) / "promtool"
    promtool.write_text("#!/bin/sh\n")
    promtool.chmod(0o755)
    run, calls = install(env)
    assert run.returncode == 0 and calls == []
