"""Shared fixtures: real and synthetic regression data."""

from __future__ import annotations

import numpy as np
import pytest


def correlated_design(n: int, p: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """AR(1)-correlated Gaussian columns (corr(x_i, x_j) = rho^|i-j|) and a sparse linear target."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, p))
    X = np.empty_like(Z)
    X[:, 0] = Z[:, 0]
    for j in range(1, p):
        X[:, j] = rho * X[:, j - 1] + np.sqrt(1 - rho**2) * Z[:, j]
    X = X * rng.uniform(0.5, 20.0, p) + rng.uniform(-50, 50, p)  # uneven scales and offsets
    beta = np.zeros(p)
    k = max(1, p // 5)
    beta[rng.choice(p, k, replace=False)] = rng.standard_normal(k) * 3
    y = X @ beta + 7.0 + rng.standard_normal(n) * 2.0
    return X, y


@pytest.fixture(scope="session", autouse=True)
def _cache_home(tmp_path_factory: pytest.TempPathFactory):
    """regsweep's cache (the empty MLflow store, :mod:`pipeline.tracking.schema_cache`) in a directory of this
    test session, shared by its tests and the processes they start, not in the user's home."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache-home"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """Efron et al. (2004) diabetes data, 442 x 10, unscaled (real data)."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True, scaled=False)
    return X, y


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory):
    """An initialised, empty MLflow SQLite store to copy (its schema migrations take seconds; do them once)."""
    from mlflow import MlflowClient

    d = tmp_path_factory.mktemp("mlflow-template")
    MlflowClient(tracking_uri=f"sqlite:///{d / 'mlflow.db'}").search_experiments()
    return d / "mlflow.db"


@pytest.fixture(scope="session")
def penguins():
    """The bundled Palmer penguins (text columns, a missing sex) with 25 more gaps in two numeric columns."""
    from importlib import resources

    import pandas as pd

    df = pd.read_csv(resources.files("pipeline.datasets") / "penguins.csv")
    rng = np.random.default_rng(11)
    df.loc[rng.choice(len(df), 15, replace=False), "bill_length_mm"] = np.nan
    df.loc[rng.choice(len(df), 10, replace=False), "flipper_length_mm"] = np.nan
    return df
