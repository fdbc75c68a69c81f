"""Config: every shipped file loads; every rule names its key path and value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.config import SweepConfig, load_config
from pipeline.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"quickstart.yaml", "cluster.yaml", "synthetic-large.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, SweepConfig)
    assert cfg.search.n_trials >= 1


def test_empty_file_means_all_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    cfg = load_config(p)
    assert cfg.data.source == "bundled:diabetes"
    assert cfg.cluster.address is None
    assert cfg.tracking.uri.startswith("sqlite:///")


def test_fixed_key_paths_exist():
    cfg = load_config(None, [
        "data.source=synthetic", "data.target=y", "data.synthetic.n_rows=1000", "data.synthetic.n_features=7",
        "data.synthetic.n_informative=3", "data.synthetic.correlation=0.2", "data.synthetic.noise=0.5",
        "data.synthetic.seed=3", "folds.k=4", "folds.seed=9", "search.n_trials=7", "search.penalties=[l1]",
        "search.seed=5", "search.storage=sqlite:///x.db", "search.study_name=s", "cluster.address=tcp://127.0.0.1:8786",
        "cluster.n_workers=3", "tracking.uri=http://127.0.0.1:5000", "tracking.experiment=e",
        "tracking.registered_model=m",
    ])
    assert cfg.data.synthetic.n_rows == 1000 and cfg.folds.k == 4 and cfg.search.penalties == ["l1"]
    assert cfg.cluster.address == "tcp://127.0.0.1:8786" and cfg.tracking.registered_model == "m"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["search.n_trail=3"], "search.n_trail: unknown key; did you mean 'search.n_trials'?"),
        (["sarch.n_trials=3"], "sarch: unknown key; did you mean 'search'?"),
        (["search.n_trials=0"], "search.n_trials: Input should be greater than or equal to 1, got 0"),
        (["search.n_trials=many"], "search.n_trials: Input should be a valid integer"),
        (["folds.k=1"], "folds.k: Input should be greater than or equal to 2, got 1"),
        (["search.penalties=[l1, ridge]"], "search.penalties.1: Input should be 'l1', 'l2' or 'elasticnet', got 'ridge'"),
        (["search.penalties=[]"], "search.penalties: List should have at least 1 item"),
        (["search.lambda1.low=5", "search.lambda1.high=1"], "search.lambda1: low < high must hold, got low=5.0, high=1.0"),
        (["search.lambda2.low=0"], "search.lambda2.low: must be a positive number or 'auto'"),
        (["search.lambda2.high=-3"], "search.lambda2.high: must be a positive number or 'auto'"),
        (["search.storage=redis://localhost"], "search.storage: URI scheme must be one of sqlite, postgresql, mysql, got 'redis://localhost'"),
        (["tracking.uri=ftp://x"], "tracking.uri: URI scheme must be one of"),
        (["data.synthetic.n_informative=50"], "n_informative must be <= n_features, got n_informative=50 > n_features=20"),
        (["data.features=[a, b, a]"], "data.features: features must be listed once each, got duplicates ['a']"),
        (["cluster=3"], "cluster: Input should be a valid dictionary"),
        (["data.missing=skip"], "data.missing: Input should be 'error', 'drop' or 'impute', got 'skip'"),
        (["folds.group=''"], "folds.group: String should have at least 1 character, got ''"),
        # PyYAML (YAML 1.1) reads 1e3 as text; the message called the user's number a string (probe F)
        (["search.seed=1e3"], "got '1e3' (YAML reads 1e3 as text, not a number: write 1000 or 1.0e+03)"),
        (["search.n_trials=0", "folds.k=1"], "2 problems:\n  - folds.k: Input should be greater than or equal to 2, got 1\n  - search.n_trials:"),
        (["nokey"], "--set expects key.path=value, got 'nokey'"),
        (["search.n_trials=3", "search.n_trials.x=1"], "search.n_trials is a value, not a section"),
        # the fourth probe: check-config passed these, and the sweep ended in a traceback (or after every trial)
        (["cluster.memory_limit=abc"], "cluster.memory_limit: must be 'auto' or a size such as '4GiB'"),
        (["cluster.dashboard_address=notanaddress"], "cluster.dashboard_address: must be host:port (e.g. "
                                                     "127.0.0.1:8787, or :0 for any free port) or null, got "
                                                     "'notanaddress'"),
        (["tracking.registered_model='team/model v1'"], "tracking.registered_model: must be a name without '/' or "
                                                        "':' that is not a path ('.', '..'), as MLflow requires, "
                                                        "got 'team/model v1'; e.g. 'team-model v1'"),
        (["tracking.registered_model=.."], "tracking.registered_model: must be a name without"),
    ],
)
def test_bad_configs_name_the_key_and_value(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("given", "suggested", "loaded"), [
    (["data.target=5"], "data.target=\"'5'\"", ("target", "5")),
    (["data.target=yes"], "data.target=\"'yes'\"", ("target", "yes")),
    (["data.target=y", "data.exclude=[3]"], "data.exclude=\"['3']\"", ("exclude", ["3"])),
])
def test_a_column_name_yaml_reads_as_a_number_is_told_to_quote_it(given, suggested, loaded):
    """YAML reads target: 5 as a number and yes as true; the message gives the quoted form, which loads."""
    with pytest.raises(ConfigError) as info:
        load_config(None, given)
    assert suggested in str(info.value)
    cfg = load_config(None, [*given[:-1], suggested.replace('"', "")])
    assert getattr(cfg.data, loaded[0]) == loaded[1]


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(scalar)


def test_a_key_given_twice_is_refused_and_yaml_merges_still_work(tmp_path):
    """A second ``data:`` section silently replaced the first: the sweep read the bundled data and registered
    it under the user's model name (the fourth probe)."""
    twice = tmp_path / "twice.yaml"
    twice.write_text("data: {source: g.csv, target: invest}\nsearch: {n_trials: 5}\ndata: {block_rows: 1000}\n")
    with pytest.raises(ConfigError, match=r"the key 'data' appears twice in one mapping \(lines 1 and 3\); merge "
                                          "the two into one"):
        load_config(twice)
    inner = tmp_path / "inner.yaml"
    inner.write_text("search:\n  n_trials: 5\n  seed: 1\n  n_trials: 9\n")
    with pytest.raises(ConfigError, match=r"the key 'n_trials' appears twice in one mapping \(lines 2 and 4\)"):
        load_config(inner)
    merged = tmp_path / "merged.yaml"  # '<<' keys may be overridden, as YAML merges say
    merged.write_text("x-base: &base {n_trials: 5, seed: 3}\nsearch:\n  <<: *base\n  n_trials: 7\n")
    with pytest.raises(ConfigError, match="x-base"):  # an unknown section, not a duplicate
        load_config(merged)
    merged.write_text("search:\n  <<: {n_trials: 5, seed: 3}\n  n_trials: 7\n")
    cfg = load_config(merged)
    assert cfg.search.n_trials == 7 and cfg.search.seed == 3


def test_overrides_parse_yaml_values_and_win_over_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("search:\n  n_trials: 5\n")
    cfg = load_config(p, ["search.n_trials=9", "cluster.address=null", "model.standardize=false"])
    assert cfg.search.n_trials == 9 and cfg.cluster.address is None and cfg.model.standardize is False


def test_resolved_yaml_round_trips(tmp_path):
    cfg = load_config(None, ["search.n_trials=3"])
    p = tmp_path / "resolved.yaml"
    p.write_text(cfg.to_yaml())
    assert load_config(p) == cfg


@pytest.mark.parametrize(("key", "value"), [("cluster.memory_limit", "4GiB"), ("cluster.memory_limit", "512 MB"),
                                            ("cluster.memory_limit", "0"), ("cluster.dashboard_address", ":0"),
                                            ("cluster.dashboard_address", "localhost:8787"),
                                            ("tracking.registered_model", "churn model v2")])
def test_sizes_addresses_and_names_that_work_are_kept(key, value):
    section, name = key.split(".")
    assert getattr(getattr(load_config(None, [f"{key}={value}"]), section), name) == value


def test_an_unusable_study_storage_is_named_before_the_cluster_starts(tmp_path):
    """A SQLite file in a directory that does not exist, and a PostgreSQL server that does not answer, failed
    with tracebacks (the lock file's FileNotFoundError; SQLAlchemy's OperationalError after the workers
    started)."""
    import socket

    from pipeline.errors import SweepError
    from pipeline.search import check_storage

    check_storage(f"sqlite:///{tmp_path}/optuna.db")
    with pytest.raises(ConfigError, match=f"search.storage 'sqlite:///{tmp_path}/no/x.db': directory "
                                          f"'{tmp_path}/no' does not exist; create it first."):
        check_storage(f"sqlite:///{tmp_path}/no/x.db")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SweepError, match=rf"search.storage postgresql\+psycopg2://127.0.0.1:{port}/db is "
                                         r"unreachable \(.*\); start the database, or set search.storage"):
        check_storage(f"postgresql+psycopg2://user:secret@127.0.0.1:{port}/db")


@pytest.mark.parametrize(("key", "family", "fragment"), [
    ("data.offset", "gaussian", "data.offset applies to model.family binomial or poisson, not gaussian"),
    ("data.exposure", "gaussian", "data.exposure applies to model.family poisson, not gaussian; remove it or set "
     "model.family: poisson"),  # said both
    ("data.exposure", "binomial", "data.exposure applies to model.family poisson; for binomial give a log-scale"),
])
def test_an_offset_or_exposure_names_the_families_it_applies_to(key, family, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(None, [f"{key}=e", f"model.family={family}"])


@pytest.mark.parametrize(("overrides", "fragment"), [
    (["search.lambda2.high=1e-12"], "search.lambda2: the resolved range [1e-08, 1e-12] is empty (the low bound came "
                                    "from the largest eigenvalue of the features' Gram, 1e-8 and 10 times it)"),
    (["search.lambda1.low=10"], "search.lambda1: the resolved range [10, 1] is empty (the high bound came from "
                                "λ1_max, which is 0 when no feature varies"),
])
def test_an_empty_resolved_range_names_where_its_auto_bound_came_from(overrides, fragment):
    """The λ2 range's message blamed λ1_max, which has nothing to do with it (probe F)."""
    from pipeline.errors import DataError
    from pipeline.search.space import resolve_space

    bounds = {"lambda1_low": 1e-6, "lambda1_high": 1.0, "lambda2_low": 1e-8, "lambda2_high": 10.0}
    with pytest.raises(DataError, match=re.escape(fragment)):
        resolve_space(load_config(None, overrides).search, bounds)
