"""What regsweep writes to MLflow, as plain data (no MLflow import): trial records and run tags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DRIVER_TAG", "ChildRun", "TrialRecord", "param_str", "quote"]

DRIVER_TAG = "regsweep.driver"


@dataclass(frozen=True)
class TrialRecord:
    """What one finished trial logs as a child run."""

    number: int
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    start_ms: int
    end_ms: int
    status: str = "FINISHED"
    parent: str | None = None  # the parent run (default: this sweep's)
    run_id: str | None = None  # complete this existing run instead of creating one


@dataclass(frozen=True)
class ChildRun:
    """An existing child run of a trial."""

    run_id: str
    status: str


def quote(value: str) -> str:
    """``value`` inside a single-quoted MLflow search filter."""
    return value.replace("'", "\\'")


def param_str(v: Any) -> str:
    """A parameter value as MLflow stores it (at most 6000 characters)."""
    s = str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."
