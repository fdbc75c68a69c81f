"""Property tests: random malformed configs and data frames give regsweep's own errors, never a crash.

Whatever the input, ``load_config`` either returns a config or raises
:class:`ConfigError`; the data path (plan from metadata, every block loaded
and reduced to fold statistics on a "worker", the pass finished, the column
notes computed) either succeeds or raises a :class:`RegsweepError`. Every
error message is non-empty. Example counts are bounded so the file runs in
seconds.
"""

from __future__ import annotations

import string
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.columns import column_notes
from pipeline.config import SweepConfig, _ALL_KEYS, load_config
from pipeline.data import plan_data
from pipeline.errors import ConfigError, RegsweepError
from pipeline.cv.passes import block_pass, finish_pass, merge_block_passes

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ configs
_KEYS = st.sampled_from(sorted(_ALL_KEYS)) | st.text(string.ascii_letters + "_.", min_size=1, max_size=12)
_SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
            | st.text(max_size=20) | st.sampled_from(["auto", "l1", "drop", "sqlite:///x.db", "tls://h:1", "tcp://h:1"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
                       max_leaves=12)
_SECTIONS = st.dictionaries(st.sampled_from(list(SweepConfig.model_fields)) | _KEYS, _VALUES, max_size=4)


def _check_config(text: str | None, overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = None
        if text is not None:
            path = Path(d) / "c.yaml"
            path.write_text(text)
        try:
            cfg = load_config(path, overrides)
        except ConfigError as e:
            assert str(e).strip()
        else:
            assert isinstance(cfg, SweepConfig)


@SETTINGS
@given(raw=_SECTIONS, overrides=st.lists(st.tuples(_KEYS, _SCALARS | st.text(max_size=10)), max_size=3))
def test_random_configs_give_config_errors_only(raw, overrides):
    _check_config(yaml.safe_dump(raw), [f"{k}={v}" for k, v in overrides])


@SETTINGS
@given(text=st.text(max_size=60) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
       overrides=st.lists(st.text(max_size=15), max_size=2))
def test_random_config_text_and_overrides_give_config_errors_only(text, overrides):
    _check_config(text, overrides)


# -------------------------------------------------------------- data frames
_NAMES = st.sampled_from(["a", "b", "y", "w", "g", " a", "a b", ""])


@st.composite
def _column(draw, n: int) -> object:
    kind = draw(st.sampled_from(["float", "int", "bool", "text", "mixed", "nan", "date", "const", "nullable"]))
    floats = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.sampled_from([0.0, 1.0, -1.0])
    if kind == "float":
        return np.array(draw(st.lists(floats, min_size=n, max_size=n)), dtype=float)
    if kind == "int":
        return np.array(draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)), dtype=np.int64)
    if kind == "bool":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if kind == "text":
        return draw(st.lists(st.text(max_size=4), min_size=n, max_size=n))
    if kind == "mixed":
        return draw(st.lists(st.one_of(floats, st.text(max_size=3), st.none()), min_size=n, max_size=n))
    if kind == "nan":
        return np.full(n, np.nan)
    if kind == "nullable":  # pandas' Int64 with missing values (kept as such through Parquet)
        return pd.array(draw(st.lists(st.none() | st.integers(-100, 100), min_size=n, max_size=n)), dtype="Int64")
    if kind == "date":
        return pd.date_range("2020-01-01", periods=n)
    return np.full(n, draw(floats))


@st.composite
def _frames(draw):
    """Mostly plausible frames (numeric a, b, y) with random damage: odd extra columns, NaN/inf, few rows."""
    n = draw(st.integers(0, 12))
    clean = st.floats(-1e6, 1e6, allow_nan=False)
    frame = {name: np.array(draw(st.lists(clean, min_size=n, max_size=n)), dtype=float) for name in ("a", "b", "y")}
    for name in draw(st.lists(_NAMES, max_size=2, unique=True)):
        frame[name] = draw(_column(n))
    if n and draw(st.booleans()):  # a few non-finite cells in a numeric column
        col = draw(st.sampled_from(["a", "b", "y"]))
        if isinstance(frame[col], np.ndarray) and frame[col].dtype == float:
            rows = draw(st.lists(st.integers(0, n - 1), max_size=3))
            frame[col][rows] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return pd.DataFrame(frame)


@SETTINGS
@given(frame=_frames(), fmt=st.sampled_from(["csv", "parquet"]), target=st.just("y") | _NAMES | st.none(),
       features=st.none() | st.lists(_NAMES, min_size=1, max_size=3, unique=True), weight=st.none() | _NAMES,
       group=st.none() | st.none() | _NAMES, missing=st.sampled_from(["error", "drop"]), block_rows=st.integers(1, 5),
       k=st.integers(2, 4))
def test_random_frames_give_regsweep_errors_only(frame, fmt, target, features, weight, group, missing, block_rows, k):
    from pipeline.config import DataConfig, FoldsConfig
    from pipeline.levels import encoding_from_scan, merge_scans, scan_block

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"d.{fmt}"
        try:
            if fmt == "csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_parquet(path)
        except Exception:  # pandas/pyarrow cannot write this frame at all: not an input regsweep can see
            event("unwritable frame")
            return
        try:
            data = DataConfig(source=str(path), target=target, features=features, weight=weight, missing=missing,
                              block_rows=block_rows)
            folds = FoldsConfig(k=k, group=group)
        except Exception:  # the config schema refuses it (tested above)
            event("config refused")
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # overflow in huge integer sums
                plan = plan_data(data, folds)
                if plan.needs_scan:  # text or boolean columns: their levels first, as a sweep finds them
                    scans = merge_scans([scan_block(plan, spec) for spec in plan.blocks])
                    plan = plan.with_encoding(encoding_from_scan(plan, scans))
                parts = [block_pass(plan, spec, k, 0) for spec in plan.blocks]
                passes = finish_pass(merge_block_passes(*parts), k, 0) if len(parts) > 1 else finish_pass(parts[0], k, 0)
                column_notes(passes.total, plan.feature_names, passes.dropped_by)
            event("data pass completed")
        except RegsweepError as e:
            event(f"{type(e).__name__}")
            assert str(e).strip()
