"""``pipeline.run_sweep``: the notebook API, silent, with typed overrides, returning a SweepResult."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline
from pipeline.errors import ConfigError


def test_run_sweep_is_silent_and_returns_the_selected_registered_model(tmp_path, monkeypatch, capsys, diabetes):
    monkeypatch.chdir(tmp_path)
    result = pipeline.run_sweep(None, overrides={
        "search.n_trials": 10, "search.select": "1se", "search.study_name": "api",
        "cluster.dashboard_address": None, "tracking.log_trials": False,
    })
    assert capsys.readouterr().out == ""  # silent by default
    assert isinstance(result, pipeline.SweepResult)
    assert result.n_trials_complete == 10 and result.study_name == "api" and result.model_version == 1
    assert result.selected == result.summary["selected"] and result.selected["rule"] == "1se"
    # the registered model is the 1-SE choice, refit on all rows
    model = result.model
    assert (model.penalty, model.lambda1, model.lambda2) == (result.selected["penalty"], result.selected["lambda1"],
                                                             result.selected["lambda2"])
    assert model.n_nonzero == result.selected["n_nonzero"] < 10
    X, _ = diabetes
    np.testing.assert_allclose(model.predict(X), X @ model.coef + model.intercept, rtol=1e-14)
    trials = result.trials
    assert len(trials) == 10 and list(trials.columns)[:5] == ["number", "state", "penalty", "lambda1", "lambda2"]
    assert trials["cv_mse"].min() == result.best_cv_mse
    with pytest.raises(AttributeError, match="no field 'nonsense'"):
        _ = result.nonsense


def test_run_sweep_takes_a_mapping_and_a_config_object_and_refuses_bad_keys(tmp_path, monkeypatch):
    from pipeline.config import config_from

    monkeypatch.chdir(tmp_path)
    cfg = config_from({"search": {"n_trials": 3, "study_name": "obj"}}, {"search.penalties": ["l2"]})
    assert (cfg.search.n_trials, cfg.search.penalties) == (3, ["l2"])
    again = config_from(cfg, {"search.n_trials": 4})
    assert (again.search.n_trials, again.search.penalties) == (4, ["l2"])
    with pytest.raises(ConfigError, match="did you mean 'search.n_trials'"):
        config_from(None, {"search.n_trial": 4})
    with pytest.raises(ConfigError, match="search.n_trials: Input should be greater than or equal to 1"):
        pipeline.run_sweep({"search": {"n_trials": 0}})
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_calling_run_sweep_outside_its_main_guard_is_told_before_any_work(tmp_path, guarded):
    """The embedded cluster's fork server imports the script once more: unguarded, the sweep ran again there and
    the cluster failed with "Nanny failed to start" after seconds, having re-run the script's side effects. Now
    one clear line first. Guarded (here through a function), the call goes on (to the data plan, which refuses
    the missing file: the check let it through)."""
    import subprocess
    import sys

    body = ("import pipeline\n"
            "def main():\n"
            "    pipeline.run_sweep(overrides={'data.source': 'nope.csv', 'data.target': 'y'})\n")
    body += 'if __name__ == "__main__":\n    main()\n' if guarded else "open('ran', 'a').write('x')\nmain()\n"
    (tmp_path / "script.py").write_text(body)
    proc = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    if guarded:
        assert "data.source 'nope.csv' does not exist" in proc.stderr and "top level" not in proc.stderr
    else:
        assert "ConfigError: pipeline.run_sweep is called at the top level of" in proc.stderr
        assert 'script.py (line 5)' in proc.stderr and 'under if __name__ == "__main__":' in proc.stderr
        assert (tmp_path / "ran").read_text() == "x"  # the script ran once: no worker imported it again
