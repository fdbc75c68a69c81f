"""The study's TPE sampler with its parameter groups found incrementally asks exactly what Optuna's asks."""

from __future__ import annotations

import math

import optuna
import pytest

from pipeline.search.study import _sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _asked(sampler: optuna.samplers.BaseSampler, n: int) -> list[tuple]:
    """``n`` trials over regsweep's conditional space, four in flight (constant liar), told a smooth value."""
    study = optuna.create_study(direction="minimize", sampler=sampler)
    asked, pending = [], []
    for _ in range(n):
        trial = study.ask()
        penalty = trial.suggest_categorical("penalty", ["l1", "l2", "elasticnet"])
        if penalty != "l2":
            trial.suggest_float("lambda1", 4e-8, 40.0, log=True)
        if penalty != "l1":
            trial.suggest_float("lambda2", 4e-8, 40.0, log=True)
        pending.append(trial)
        if len(pending) == 4:
            done = pending.pop(0)
            if done.number % 17 == 5:
                study.tell(done, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(done, math.log1p(done.params.get("lambda1", 0.0)) + (done.params["penalty"] == "l2"))
        asked.append(tuple(sorted(trial.params.items())))
    return asked


@pytest.mark.parametrize("seed", [0, 7])
def test_incremental_groups_ask_what_the_stock_sampler_asks(seed: int) -> None:
    ours = _sampler(seed)
    assert type(ours._group_decomposed_search_space).__name__ == "_Incremental"  # the replacement is in place
    stock = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                       n_startup_trials=10)
    assert _asked(ours, 120) == _asked(stock, 120)
