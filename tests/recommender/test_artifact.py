from __future__ import annotations

import io
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recommender.artifact import load_artifact
from recommender.errors import InputError
from recommender.telemetry import JsonFormatter


@pytest.fixture
def copy(tmp_path: Path, small_artifact: Path) -> Path:
    dest = tmp_path / "art"
    shutil.copytree(small_artifact, dest)
    return dest


def test_round_trip_and_reproducible_digest(copy: Path, small_artifact: Path) -> None:
    art = load_artifact(copy)
    assert art.digest == json.loads((small_artifact / "metadata.json").read_text())["content_sha256"]
    assert art.item_ids.size == art.model.n_items
    assert art.metadata["metrics"]["lift_ndcg"] > 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "metadata.json").unlink(), "metadata.json is missing"),
        (lambda d: (d / "metadata.json").write_text("{nope"), "not valid JSON"),
        (lambda d: (d / "metadata.json").write_text("[1, 2]"), "JSON object"),
        (lambda d: (d / "model.npz").unlink(), "model.npz is missing"),
        (lambda d: (d / "model.npz").write_bytes(b"PK\x03\x04 garbage"), "corrupt"),
        (lambda d: np.savez(d / "model.npz", neighbours=np.zeros((1, 1))), "lacks arrays"),
    ],
)
def test_damaged_artifacts_are_refused(copy: Path, damage: object, message: str) -> None:
    damage(copy)  # type: ignore[operator]
    with pytest.raises(InputError, match=message):
        load_artifact(copy)


def test_expected_digest_must_match(copy: Path) -> None:
    with pytest.raises(InputError, match="does not match version"):
        load_artifact(copy, "0" * 64)


def test_json_log_lines_carry_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.recommender.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("model loaded", extra={"model_version": "abc", "color_message": "\x1b[1mx"})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "model loaded" and first["model_version"] == "abc" and first["level"] == "warning"
    assert "color_message" not in first and first["ts"].endswith("Z")
    assert "ValueError: boom" in second["exc"]


def test_model_file_bytes_are_reproducible(small_data: Path, tmp_path: Path) -> None:
    """numpy stamps the clock into .npz entries; ours do not, so a retrain is the same file."""
    from recommender.commands import train

    for name in ("a", "b"):
        train(small_data / "orders.csv", tmp_path / name, catalog=small_data / "catalog.csv", log=None)
    assert (tmp_path / "a" / "model.npz").read_bytes() == (tmp_path / "b" / "model.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a" / "model.npz") as zf:  # not merely trained within the same second
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(tmp_path / "a" / "model.npz", allow_pickle=False) as npz:
        assert {"neighbours", "scores", "popularity", "item_ids", "params", "similarity"} <= set(npz.files)
