"""Shared fixtures: a small generated Bookstore and a trained, evaluated artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.commands import evaluate_artifact, train
from recommender.datagen import DatasetSpec, generate

SMALL = DatasetSpec(seed=7, customers=1500, books=400, orders=15000)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    generate(SMALL, out)
    return out


@pytest.fixture(scope="session")
def small_artifact(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    orders, catalog = small_data / "orders.csv", small_data / "catalog.csv"
    train(orders, out, catalog=catalog, k=20, log=None)
    evaluate_artifact(out, orders, catalog=catalog, log=None)
    return out


def random_purchases(seed: int, users: int, items: int, density: float) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((users, items)) < density
    return sp.csr_matrix(dense.astype(np.float32))
