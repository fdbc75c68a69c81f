"""The sweep configuration: schema, defaults, overrides, clear errors.

A config is YAML validated by a closed pydantic schema (unknown keys are
errors). Every error names the key path (``search.n_trials``), the rule and
the value, and for an unknown key the closest valid key. ``--set
key.path=value`` overrides parse their value as YAML (``3`` is an int,
``[l1, l2]`` a list, ``null`` None).

Every key has a default, so an empty file is a valid config: the bundled
diabetes data on an embedded local cluster, with Optuna and MLflow in
SQLite files in the working directory.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import ConfigError

__all__ = [
    "BoundsConfig",
    "ClusterConfig",
    "DataConfig",
    "FoldsConfig",
    "HoldoutConfig",
    "ModelConfig",
    "RetrainConfig",
    "SearchConfig",
    "SecurityConfig",
    "SweepConfig",
    "SyntheticConfig",
    "TrackingConfig",
    "apply_overrides",
    "apply_values",
    "check_database_drivers",
    "config_from",
    "load_config",
]

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "http", "https", "file")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class SyntheticConfig(_Strict):
    """Synthetic data ``y = Xβ + noise``, generated block by block on the workers."""

    n_rows: int = Field(100_000, ge=2, description="rows")
    n_features: int = Field(20, ge=1, description="columns of X")
    n_informative: int = Field(5, ge=0, description="non-zero entries of the true β")
    correlation: float = Field(0.5, ge=0.0, lt=1.0, description="correlation between every pair of columns")
    noise: float = Field(1.0, ge=0.0, description="standard deviation of the Gaussian noise")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _informative_fits(self) -> SyntheticConfig:
        if self.n_informative > self.n_features:
            raise ValueError(
                f"n_informative must be <= n_features, got n_informative={self.n_informative} "
                f"> n_features={self.n_features}"
            )
        return self


class DataConfig(_Strict):
    """Where the rows come from."""

    source: str = Field(
        "bundled:diabetes",
        description="bundled:diabetes | synthetic | a .parquet file, directory or glob | a .csv file | X.npy",
    )
    target: str | None = Field(
        None, min_length=1, description="target column (tabular), or the y .npy path (npy); default: 'target' for bundled"
    )
    features: list[str] | None = Field(None, description="feature columns; default: every other column")
    weight: str | None = Field(None, min_length=1, description="sample-weight column")
    block_rows: int = Field(65_536, ge=1, description="rows per block (Dask partition)")
    exclude: list[str] | None = Field(None, description="columns left out (every other column is a feature)")
    categorical: Literal["auto"] | list[str] = Field(
        "auto", description="auto: text, boolean and dictionary-typed columns are categorical (one indicator per "
        "level); a list names them (integer-coded columns too)")
    max_levels: int = Field(1000, ge=2, description="most levels one categorical column may have")
    missing: Literal["error", "drop", "impute"] = Field(
        "error",
        description="NaN/inf in a feature, target or weight: error (name file, column, rows) | drop those rows "
        "(counted) | impute: a feature's missing entries take its mean over each fold's training rows (rows "
        "missing the target or weight are dropped)",
    )
    missing_indicators: bool = Field(False, description="under impute: one 0/1 feature per column with missing values")
    na_values: list[str] | None = Field(None, description="CSV strings that mark a missing entry; default: pandas' list")
    positive_class: str | int | bool | None = Field(
        None, description="model.family binomial: the target label coded 1 (default: 1 / true, or the second of "
        "two text labels in sorted order, as scikit-learn's classes_[1])")
    offset: str | None = Field(
        None, min_length=1, description="model.family binomial or poisson: a column added to the linear predictor "
        "with coefficient 1 (a log-exposure; any finite value)")
    exposure: str | None = Field(
        None, min_length=1, description="model.family poisson: a positive column whose log is the offset (time at "
        "risk, policy years); at most one of data.offset and data.exposure")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @field_validator("features", "exclude")
    @classmethod
    def _listed_once(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is not None:
            dup = sorted({c for c in v if v.count(c) > 1})
            if dup:
                raise ValueError(f"{info.field_name} must be listed once each, got duplicates {dup}")
            if not v and info.field_name == "features":
                raise ValueError("features must not be empty; omit the key to use every column")
        return v

    @model_validator(mode="after")
    def _features_or_exclude(self) -> DataConfig:
        if self.features is not None and self.exclude:
            raise ValueError("set data.features (the columns to use) or data.exclude (the columns to leave out), "
                             "not both")
        if self.offset is not None and self.exposure is not None:
            raise ValueError("set data.offset (a log-exposure column) or data.exposure (a positive column whose log "
                             "is used), not both")
        return self


class FoldsConfig(_Strict):
    """Cross-validation folds."""

    k: int = Field(5, ge=2, description="number of folds")
    seed: int = Field(0, ge=0, description="seed of the fold assignment")
    group: str | None = Field(None, min_length=1, description="group column: group k-fold (a group's rows share a fold)")
    stratify: bool = Field(True, description="model.family binomial: deal each class's rows evenly to the folds "
                           "(seeded; row k-fold only)")


class ModelConfig(_Strict):
    """How every candidate is fitted."""

    family: Literal["gaussian", "binomial", "poisson"] = Field(
        "gaussian", description="the loss: gaussian (squared error), binomial (logistic: two classes, predicts the "
        "positive class's probability), poisson (counts ≥ 0, predicts the expected count); each the mean deviance/2 "
        "plus the penalty, as glmnet")
    standardize: bool = True
    fit_intercept: bool = True
    tol: float = Field(1e-10, gt=0.0, lt=1.0, description="duality-gap tolerance relative to ½·mean(y_c²) (y_c: y "
                       "centred when an intercept is fitted); binomial, poisson: the Newton decrement relative to the "
                       "smaller of the null model's and the current objective (at least 1e-4 of the null's)")
    engine: Literal["auto", "gram", "rows"] = Field(
        "auto", description="gram: K p×p fold Grams from one data pass (tall data); rows: the rows on every worker, "
        "no p×p matrix (wide or sparse data); auto: gram iff the source is dense, p ≤ a fold's training rows and "
        "the K Grams take ≤ ¼ of the smallest worker's memory limit")
    penalty_factor: dict[str, float] = Field(
        default_factory=dict,
        description="{column name or glob: factor ≥ 0} multiplying both parts of a feature's penalty (0: unpenalized; "
        "others 1; rescaled once to sum to p, as glmnet's penalty.factor); categorical levels as column=level")
    coef_limits: dict[str, list[float]] = Field(
        default_factory=dict,
        description="{column name or glob: [lower, upper]} limits of a coefficient on the data's scale, "
        "lower ≤ 0 ≤ upper (glmnet's lower/upper.limits; -.inf/.inf for none; [0, .inf] keeps it non-negative)")

    @field_validator("penalty_factor")
    @classmethod
    def _factors(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: f for k, f in v.items() if not (math.isfinite(f) and f >= 0)}
        if bad:
            raise ValueError(f"factors must be finite and >= 0 (0 leaves a feature unpenalized), got {bad}")
        return v

    @field_validator("coef_limits")
    @classmethod
    def _limits(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for k, lim in v.items():
            if len(lim) != 2 or any(math.isnan(x) for x in lim) or not lim[0] <= 0 <= lim[1]:
                raise ValueError(f"{k!r}: [lower, upper] with lower <= 0 <= upper (0 must be feasible, as in glmnet), "
                                 f"got {lim}; use [0, .inf] for a non-negative coefficient")
        return v


class GroupMultiplierConfig(_Strict):
    """One searched group: its columns and the log-scale range of its penalty multiplier."""

    columns: list[str] = Field(min_length=1, description="column names or globs (column=level for categorical levels)")
    range: list[float] = Field(description="[low, high] of the multiplier, 0 < low < high (log scale)")

    @field_validator("range")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or not all(math.isfinite(x) and x > 0 for x in v) or not v[0] < v[1]:
            raise ValueError(f"range must be [low, high] with 0 < low < high, got {v}")
        return v


class BoundsConfig(_Strict):
    """Log-uniform search range of one λ; ``auto`` derives it from the data."""

    low: float | Literal["auto"] = "auto"
    high: float | Literal["auto"] = "auto"

    @field_validator("low", "high")
    @classmethod
    def _positive(cls, v: float | str) -> float | str:
        if v != "auto" and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"must be a positive number or 'auto' (log-uniform range), got {v!r}")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> BoundsConfig:
        if self.low != "auto" and self.high != "auto" and not self.low < self.high:
            raise ValueError(f"low < high must hold, got low={self.low!r}, high={self.high!r}")
        return self


_ALL_PENALTIES: list[Literal["l1", "l2", "elasticnet"]] = ["l1", "l2", "elasticnet"]


class SearchConfig(_Strict):
    """The Optuna study."""

    n_trials: int = Field(50, ge=1, description="trials the study must hold COMPLETE at the end")
    penalties: list[Literal["l1", "l2", "elasticnet"]] = Field(default_factory=lambda: _ALL_PENALTIES.copy(),
                                                               min_length=1)
    seed: int = Field(0, ge=0, description="TPE sampler seed")
    storage: str = Field("sqlite:///regsweep-optuna.db", description="Optuna RDB storage (SQLAlchemy URL)")
    study_name: str = Field("regsweep", min_length=1)
    lambda1: BoundsConfig = Field(default_factory=BoundsConfig)
    lambda2: BoundsConfig = Field(default_factory=BoundsConfig)
    in_flight: int | Literal["auto"] = Field(
        "auto", description="trials evaluated concurrently; auto = 4 per worker thread"
    )
    select: Literal["min", "1se"] = Field(
        "min",
        description="the registered model: min (lowest CV error among the trials and the dense path of the winning "
        "penalty) | 1se (glmnet's rule: the largest strength on that path within one standard error of the minimum)",
    )
    group_multipliers: dict[str, GroupMultiplierConfig] = Field(
        default_factory=dict,
        description="{group: {columns: [...], range: [low, high]}}: Optuna searches a log-scale penalty multiplier "
        "per group (parameter mult_<group>) alongside the penalty and λs; a column in two groups is an error")

    @field_validator("group_multipliers")
    @classmethod
    def _group_names(cls, v: dict[str, GroupMultiplierConfig]) -> dict[str, GroupMultiplierConfig]:
        bad = [g for g in v if not re.fullmatch(r"[A-Za-z0-9_.-]+", g)]
        if bad:
            raise ValueError(f"group names must be letters, digits, '_', '.' or '-' (they become the parameters "
                             f"mult_<group>), got {bad}")
        return v

    @field_validator("penalties")
    @classmethod
    def _unique_penalties(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"penalties must be listed once each, got {v}")
        return v

    @field_validator("storage")
    @classmethod
    def _storage_scheme(cls, v: str) -> str:
        return _check_scheme(v, STORAGE_SCHEMES, "an SQLAlchemy URL such as sqlite:///regsweep-optuna.db")

    @field_validator("in_flight")
    @classmethod
    def _in_flight(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be >= 1 or 'auto', got {v!r}")
        return v


class SecurityConfig(_Strict):
    """Dask TLS: PEM files handed to ``distributed.Security`` (paths relative to the working directory).

    Connecting to a scheduler, the certificate and key are the client's; an
    embedded LocalCluster uses them for its scheduler and workers as well.
    """

    tls_ca_file: str = Field(description="CA certificate that signed the scheduler's and workers' certificates")
    tls_client_cert: str = Field(description="this client's certificate (PEM; may also hold the key)")
    tls_client_key: str | None = Field(None, description="this client's private key (PEM); null: in tls_client_cert")
    require_encryption: bool = Field(True, description="refuse unencrypted connections")

    @field_validator("tls_ca_file", "tls_client_cert", "tls_client_key")
    @classmethod
    def _readable(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"must be an existing PEM file, got {v!r} (looked in {str(Path.cwd())!r})")
        return v


class ClusterConfig(_Strict):
    """The Dask cluster: a scheduler address, or an embedded LocalCluster."""

    address: str | None = Field(None, description="scheduler address; null starts an embedded LocalCluster")
    n_workers: int = Field(2, ge=1, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1)
    processes: bool = Field(True, description="LocalCluster workers as processes (false: threads of the driver)")
    memory_limit: str = Field("auto", description="per LocalCluster worker, e.g. '4GiB'")
    dashboard_address: str | None = Field("127.0.0.1:0", description="LocalCluster dashboard; null disables it")
    security: SecurityConfig | None = Field(None, description="Dask TLS; null: plain tcp:// (loopback by default)")

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory_number(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v  # 0, 4e9: bytes

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit(cls, v: str) -> str:
        if v != "auto" and not _BYTES.fullmatch(v):  # what dask's parse_bytes reads; a traceback at cluster start
            raise ValueError(f"must be 'auto' or a size such as '4GiB', '512MB' or '0' (no limit), got {v!r}")
        return v

    @field_validator("dashboard_address")
    @classmethod
    def _dashboard_address(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[\w.\-]*:\d{1,5}|\[[0-9a-fA-F:.]+\]:\d{1,5}", v):
            raise ValueError(f"must be host:port (e.g. 127.0.0.1:8787, or :0 for any free port) or null, got {v!r}")
        return v

    @model_validator(mode="after")
    def _tls_address(self) -> ClusterConfig:
        if self.security is None and self.address is not None and self.address.startswith("tls://"):
            raise ValueError(
                f"a tls:// scheduler address needs cluster.security (tls_ca_file, tls_client_cert, tls_client_key), "
                f"got address={self.address!r} without it"
            )
        if self.security is not None and self.address is not None and not self.address.startswith("tls://"):
            raise ValueError(
                f"cluster.security (TLS) needs a tls:// scheduler address, got address={self.address!r}; "
                "use tls://host:port or unset cluster.security"
            )
        return self


class TrackingConfig(_Strict):
    """MLflow."""

    uri: str = Field("sqlite:///mlflow.db", description="MLflow tracking URI")
    experiment: str = Field("regsweep", min_length=1)
    registered_model: str = Field("regsweep-model", min_length=1)
    log_trials: bool = Field(True, description="one child run per trial (false: parent run only)")
    wait_for_child_runs: bool = Field(
        False, description="true: a sweep against a tracking server returns only once every child run is written "
                           "(false: its MLflow process writes the last ones after the sweep returns)")

    @field_validator("registered_model")
    @classmethod
    def _model_name(cls, v: str) -> str:
        """MLflow's rules for a registered model's name, checked where a sweep would meet them only at its end,
        after every trial ran."""
        norm = posixpath.normpath(v)
        if not v.strip() or "/" in v or ":" in v or norm != v or norm == "." or norm.startswith(".."):
            raise ValueError(f"must be a name without '/' or ':' that is not a path ('.', '..'), as MLflow "
                             f"requires, got {v!r}; e.g. {re.sub(r'[/:]+', '-', v).strip(' .-') or 'regsweep-model'!r}")
        return v

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, v: str) -> str:
        return _check_scheme(v, TRACKING_SCHEMES, "sqlite:///mlflow.db or http://127.0.0.1:5000")


class HoldoutConfig(_Strict):
    """The rows champion and challenger are both scored on (never trained on by a retrain).

    With ``time_column`` the held-out rows are those in the newest ``fraction``
    of the time span ``[t_min, t_max]`` (``t ≥ t_max − fraction·(t_max − t_min)``);
    without it, each row is held out with probability ``fraction`` by a hash of
    ``(seed, global row index)``, so a row keeps its role as data are appended.
    """

    time_column: str | None = Field(None, description="numeric time column (e.g. epoch seconds); null: seeded fraction")
    fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of rows (or of the time span) held out")
    seed: int = Field(0, ge=0, description="seed of the row hash (no time_column)")


class RetrainConfig(_Strict):
    """``regsweep retrain``: champion/challenger on new data (see pipeline/retrain.py)."""

    mode: Literal["refit", "resweep"] = Field(
        "refit", description="refit: the champion's penalty and λ; resweep: a short warm-started study"
    )
    n_trials: int = Field(20, ge=1, description="resweep: complete trials of the new study")
    holdout: HoldoutConfig = Field(default_factory=HoldoutConfig)
    margin: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="promote when challenger_mse < (1 − margin) · champion_mse (relative improvement)",
    )
    cache: str | None = Field(
        "regsweep-statcache",
        description="block-statistics cache: a directory, 'mlflow' (the tracking server's artifact store) or null",
    )
    lock: str = Field(
        "auto",
        description="auto: a PostgreSQL advisory lock when search.storage is PostgreSQL, else a lock file "
        "next to the cache; or a lock-file path",
    )


class SweepConfig(_Strict):
    """Everything ``regsweep sweep`` (and ``regsweep retrain``) needs."""

    data: DataConfig = Field(default_factory=DataConfig)
    folds: FoldsConfig = Field(default_factory=FoldsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @model_validator(mode="after")
    def _family_keys(self) -> SweepConfig:
        family, data = self.model.family, self.data
        if family != "binomial" and data.positive_class is not None:
            raise ValueError(f"data.positive_class applies to model.family binomial, not {family}; remove it or set "
                             "model.family: binomial")
        if family == "gaussian" and (data.offset is not None or data.exposure is not None):
            key, which = ("data.offset", "binomial or poisson") if data.offset is not None else ("data.exposure",
                                                                                                  "poisson")
            raise ValueError(f"{key} applies to model.family {which}, not gaussian; remove it or set model.family: "
                             + ("poisson (counts) or binomial (0/1)" if key == "data.offset" else "poisson"))
        if family == "binomial" and data.exposure is not None:
            raise ValueError("data.exposure applies to model.family poisson; for binomial give a log-scale "
                             "data.offset")
        return self

    def to_yaml(self) -> str:
        """The resolved config as YAML (every default filled in)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _check_scheme(uri: str, schemes: Sequence[str], example: str) -> str:
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in schemes:
        raise ValueError(f"URI scheme must be one of {', '.join(schemes)}, got {uri!r}; e.g. {example}")
    return uri


# ---------------------------------------------------------------- loading
def load_config(path: str | Path | None, overrides: Iterable[str] = (), *,
                values: Mapping[str, Any] | None = None) -> SweepConfig:
    """Read ``path`` (YAML; None for all defaults), apply ``key.path=value`` overrides, validate.

    Raises
    ------
    ConfigError
        Unreadable file, invalid YAML, bad override, or any schema violation;
        the message names the file and the key path.
    """
    where = "defaults" if path is None else str(path)
    raw: Any = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {where!r}: {e.strerror or e}.") from e
        try:
            raw = _load_unique(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where} is not valid YAML: {e}") from e
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a YAML mapping of sections, got {type(raw).__name__}.")
    return _validated(apply_values(apply_overrides(raw, overrides), values or {}), where)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: the plain loader keeps the last, so a
    second ``data:`` section (``data: {block_rows: 1000}`` appended) silently dropped the first's source and
    target, and a sweep of the bundled data registered under the user's model name (the fourth probe)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base': its keys may be overridden, as YAML says
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); merge the two into one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_BYTES = re.compile(r"\s*\d+(\.\d*)?([eE]\d+)?\s*([kKmMgGtTpP][iI]?)?[bB]?\s*")  # dask.utils.parse_bytes' sizes


def _load_unique(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice (:class:`_UniqueKeyLoader`)."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _validated(raw: dict[str, Any], where: str) -> SweepConfig:
    """The config of ``raw`` (from ``where``), or a :class:`ConfigError` naming every problem's key path."""
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, where)) from None
    check_database_drivers(cfg)
    return cfg


# SQLAlchemy dialect -> (the module its driver provides, what to install)
_DRIVERS = {
    "postgresql": ("psycopg2", "pip install 'regsweep[postgres]'"),
    "postgresql+psycopg2": ("psycopg2", "pip install 'regsweep[postgres]'"),
    "postgresql+psycopg": ("psycopg", "pip install 'psycopg[binary]'"),
    "postgresql+pg8000": ("pg8000", "pip install pg8000"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+mysqldb": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
}


def check_database_drivers(cfg: SweepConfig) -> None:
    """Refuse, in one line naming the fix, a database URL whose driver is not installed.

    Without it SQLAlchemy fails deep inside Optuna or MLflow with a
    60-line traceback, after the cluster started.
    """
    import importlib.util

    for key, url in (("search.storage", cfg.search.storage), ("tracking.uri", cfg.tracking.uri)):
        dialect = url.split("://", 1)[0].lower()
        module, fix = _DRIVERS.get(dialect, (None, ""))
        if module is not None and importlib.util.find_spec(module) is None:
            shown = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
            raise ConfigError(f"{key} {shown!r} needs the database driver {module!r}, which is not installed; {fix}.")


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` applied (value parsed as YAML)."""
    out = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key.path=value, got {item!r}; e.g. --set search.n_trials=20.")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({e}).") from e
        _set_path(out, key.strip(), value, f"--set {item!r}")
    return out


def apply_values(raw: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each dotted key path set to its (typed, not parsed) value."""
    out = _deep_copy(raw)
    for key, value in values.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"overrides keys must be dotted key paths such as 'search.n_trials', got {key!r}.")
        _set_path(out, key.strip(), _deep_copy(value), f"override {key!r}")
    return out


def _set_path(out: dict[str, Any], key: str, value: Any, label: str) -> None:
    node = out
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{label}: {'.'.join(parts[: i + 1])} is a value, not a section.")
        node = child
    node[parts[-1]] = value


def config_from(config: str | Path | Mapping[str, Any] | SweepConfig | None,
                overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """A validated config from a YAML path, a mapping (the YAML's structure) or a config object, with
    ``overrides`` (dotted key paths to typed values) applied as ``--set`` would."""
    if isinstance(config, SweepConfig):
        raw: dict[str, Any] = config.model_dump(mode="json")
        where = "the config object"
    elif isinstance(config, Mapping):
        raw, where = dict(config), "the config mapping"
    else:
        return load_config(config, (), values=overrides or {})
    return _validated(apply_values(raw, overrides or {}), where)


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def _section(ann: Any) -> type[BaseModel] | None:
    """The schema class of a section annotation (``X`` or ``X | None``), else None."""
    for t in (ann, *typing.get_args(ann)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The schema class at a key path (for suggesting the closest key)."""
    model: type[BaseModel] = SweepConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = _section(field.annotation)
        if ann is not None:
            model = ann
        else:
            return None
    return model


_EXPONENT_TEXT = re.compile(r"[-+]?\d+[eE][-+]?\d+")  # 1e3, 5E-2: numbers to YAML 1.2, text to PyYAML


def _format_errors(err: ValidationError, where: str) -> str:
    by_path: dict[str, list[str]] = {}
    for e in err.errors():
        # pydantic appends union-member tags (int, literal['auto'], ...) to loc; keep the key path only
        if e["type"] == "extra_forbidden":
            loc = [str(x) for x in e["loc"]]
        else:
            loc = [str(x) for x in e["loc"] if str(x) in _ALL_KEYS or isinstance(x, int)]
        path = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            valid = sorted(parent.model_fields) if parent else []
            close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
            hint = f"; did you mean {'.'.join(loc[:-1] + close)!r}?" if close else ""
            by_path.setdefault(path, []).append(f"unknown key{hint} (valid keys here: {', '.join(valid)})")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if "got " not in msg and not isinstance(got, dict):
            msg = f"{msg}, got {got!r}"
        if e["type"] == "string_type" and isinstance(got, (bool, int, float)):  # a column named 5, yes, 1e3
            text = "yes" if isinstance(got, bool) else got
            key = ".".join(x for x in loc if not x.isdigit())
            quoted = f"['{text}']" if key != path else f"'{text}'"  # a list's item, or the value
            msg += (f" (YAML reads {'yes/no/true/false' if isinstance(got, bool) else text} as "
                    f"{'true/false' if isinstance(got, bool) else 'a number'}: write a column name in quotes, "
                    f"{'e.g. ' if isinstance(got, bool) else ''}'{text}', also in --set: {key}=\"{quoted}\")")
        if isinstance(got, str) and _EXPONENT_TEXT.fullmatch(got.strip()):  # PyYAML (YAML 1.1): 1e3 is text
            msg += f" (YAML reads {got.strip()} as text, not a number: write {float(got):g} or {float(got):.1e})"
        by_path.setdefault(path, []).append(msg)
    lines = [f"{path}: {' | '.join(dict.fromkeys(msgs))}" for path, msgs in by_path.items()]
    if len(lines) == 1:  # the usual case: one line
        return f"invalid config ({where}): {lines[0]}"
    return f"invalid config ({where}), {len(lines)} problems:\n  - " + "\n  - ".join(lines)


def _all_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        section = _section(field.annotation)
        if section is not None:
            keys |= _all_keys(section)
    return keys


_ALL_KEYS = _all_keys(SweepConfig)
