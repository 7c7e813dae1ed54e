from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from threading import Thread

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from recommender.artifact import load_artifact, write_artifact
from recommender.errors import InputError, RegistryError
from recommender.model import ItemKNN
from recommender.registry import Registry, validate_name
from tests.recommender.conftest import random_purchases


def make_artifact(directory: Path, seed: int) -> str:
    model = ItemKNN(K=3).fit(random_purchases(seed, 60, 12, 0.2))
    ids = [f"b{i}" for i in range(12)]
    return write_artifact(directory, model, ids, {"dataset_sha256": f"seed-{seed}", "timings": {"fit": seed}})


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = []
    for seed in range(4):
        d = tmp_path_factory.mktemp(f"art{seed}")
        make_artifact(d, seed)
        out.append(d)
    return out


@given(st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?", fullmatch=True))
def test_valid_names_accepted(name: str) -> None:
    if ".." not in name:
        assert validate_name(name, "--model") == name


@given(st.one_of(
    st.just(""), st.just("../etc"), st.just("a/b"), st.just("UPPER"), st.just("-x"), st.text(min_size=64),
    st.text(alphabet="/\\\x00 :*?", min_size=1),
))  # fmt: skip
def test_invalid_names_rejected(name: str) -> None:
    with pytest.raises(InputError, match="not a valid name"):
        validate_name(name, "--model")


def test_register_is_content_addressed_and_idempotent(tmp_path: Path, artifacts: list[Path]) -> None:
    reg = Registry(tmp_path)
    v1, created = reg.register("m", artifacts[0])
    assert created and len(v1) == 64
    assert reg.register("m", artifacts[0]) == (v1, False)
    # Same model retrained: different timings, same version.
    again = tmp_path / "again"
    make_artifact(again, 0)
    meta = json.loads((again / "metadata.json").read_text())
    meta["timings"] = {"fit": 123.0}
    (again / "metadata.json").write_text(json.dumps(meta))
    assert reg.register("m", again) == (v1, False)
    v2, _ = reg.register("m", artifacts[1])
    assert v2 != v1
    assert reg.versions("m") == sorted([v1, v2])
    assert not list((tmp_path / "m" / ".staging").iterdir())


def test_promote_rollback_and_lineage(tmp_path: Path, artifacts: list[Path]) -> None:
    reg = Registry(tmp_path)
    v1, _ = reg.register("m", artifacts[0])
    assert reg.promote("m", v1[:8]) == (v1, True)
    assert reg.promote("m", v1) == (v1, False)  # re-promote: no-op
    v2, _ = reg.register("m", artifacts[1])
    assert reg.lineage("m", v2)["parent_version"] == v1
    assert reg.lineage("m", v2)["dataset_sha256"] == "seed-1"
    reg.promote("m", v2)
    assert reg.alias("m", "production").version == v2  # type: ignore[union-attr]
    assert reg.rollback("m") == v1
    with pytest.raises(RegistryError, match="no earlier version"):
        reg.rollback("m")
    desc = reg.describe("m")
    assert desc["aliases"] == {"production": v1}
    assert {v["version"] for v in desc["versions"]} == {v1, v2}


def test_unknown_refs(tmp_path: Path, artifacts: list[Path]) -> None:
    reg = Registry(tmp_path)
    with pytest.raises(RegistryError, match="no version or alias"):
        reg.promote("m", "abcdef123")
    with pytest.raises(RegistryError, match="does not exist"):
        reg.rollback("m")


def test_corrupt_version_is_not_promoted_and_is_replaced_on_register(tmp_path: Path, artifacts: list[Path]) -> None:
    reg = Registry(tmp_path)
    v1, _ = reg.register("m", artifacts[0])
    npz = reg.version_dir("m", v1) / "model.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="refusing to promote"):
        reg.promote("m", v1)
    assert reg.register("m", artifacts[0]) == (v1, True)  # damaged copy quarantined, good one written
    load_artifact(reg.version_dir("m", v1), v1)


def test_tampered_metadata_detected(tmp_path: Path, artifacts: list[Path]) -> None:
    reg = Registry(tmp_path)
    v1, _ = reg.register("m", artifacts[0])
    meta_path = reg.version_dir("m", v1) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["params"]["K"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="checksum mismatch"):
        load_artifact(reg.version_dir("m", v1), v1)


def test_crash_mid_write_leaves_no_visible_version(
    tmp_path: Path, artifacts: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(tmp_path)
    real_copy = shutil.copyfile
    calls = []

    def crash_on_second(src: str, dst: str) -> str:
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst)

    monkeypatch.setattr(shutil, "copyfile", crash_on_second)
    with pytest.raises(OSError, match="No space"):
        reg.register("m", artifacts[0])
    monkeypatch.undo()
    assert reg.versions("m") == []
    assert not list((tmp_path / "m" / ".staging").iterdir())
    assert reg.register("m", artifacts[0])[1] is True


def test_concurrent_registration_of_same_content(tmp_path: Path, artifacts: list[Path]) -> None:
    reg = Registry(tmp_path)
    results: list[tuple[str, bool]] = []
    threads = [Thread(target=lambda: results.append(reg.register("m", artifacts[2]))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({v for v, _ in results}) == 1
    assert sum(created for _, created in results) >= 1
    assert len(reg.versions("m")) == 1


def test_alias_write_is_atomic_replace(tmp_path: Path, artifacts: list[Path]) -> None:
    reg = Registry(tmp_path)
    v1, _ = reg.register("m", artifacts[0])
    reg.promote("m", v1)
    alias_dir = tmp_path / "m" / "aliases"
    assert [p.name for p in alias_dir.iterdir()] == ["production.json"]  # no temp files left
    assert os.stat(alias_dir / "production.json").st_size > 0


class RegistryMachine(RuleBasedStateMachine):
    """Random register/promote/rollback sequences against a simple model of the alias."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp: Path | None = None
        self.expected: list[str] = []  # alias history, current last
        self.known: dict[int, str] = {}

    @initialize()
    def setup(self) -> None:
        import tempfile

        self.tmp = Path(tempfile.mkdtemp())
        self.reg = Registry(self.tmp)

    def teardown(self) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(i=st.integers(0, 3))
    def register(self, i: int) -> None:
        version, _ = self.reg.register("m", ARTIFACTS[i])
        if i in self.known:
            assert self.known[i] == version
        self.known[i] = version

    @precondition(lambda self: bool(self.known))
    @rule(data=st.data())
    def promote(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.known)))
        version, changed = self.reg.promote("m", self.known[i])
        assert changed == (not self.expected or self.expected[-1] != version)
        if changed:
            self.expected.append(version)

    @rule()
    def rollback(self) -> None:
        if len(self.expected) >= 2:
            assert self.reg.rollback("m") == self.expected[-2]
            self.expected.pop()
        else:
            with pytest.raises(RegistryError):
                self.reg.rollback("m")

    @invariant()
    def alias_matches(self) -> None:
        if self.tmp is None:
            return
        state = self.reg.alias("m", "production")
        if not self.expected:
            assert state is None
        else:
            assert state is not None and state.version == self.expected[-1]
            assert list(state.history) == self.expected[-2::-1][: len(state.history)]
        assert set(self.reg.versions("m")) == set(self.known.values())


ARTIFACTS: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _share_artifacts(artifacts: list[Path]) -> None:
    ARTIFACTS[:] = artifacts


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(
    max_examples=25, stateful_step_count=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
