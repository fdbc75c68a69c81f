"""pipeline.trial_sql on a real PostgreSQL server: the rows Optuna's API writes, and trial numbers assigned
once each under two concurrent writers (the study row is locked as Optuna locks it)."""

from __future__ import annotations

import uuid

import pytest

from ..trial_sql_checks import check_numbers_unique_under_concurrent_writers, check_rows_match_optuna_api

pytestmark = pytest.mark.integration


def test_rows_equal_those_of_optunas_api_on_postgres(postgres) -> None:
    check_rows_match_optuna_api(postgres, f"parity-{uuid.uuid4().hex[:8]}")


def test_two_writers_at_once_number_trials_0_to_n_minus_1_on_postgres(postgres) -> None:
    check_numbers_unique_under_concurrent_writers(postgres, f"numbers-{uuid.uuid4().hex[:8]}")
