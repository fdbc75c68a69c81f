"""Raw table columns to model features: level indicators, and missing entries marked for imputation.

An :class:`Encoding` is decided once, before the statistics pass, from the
column kinds and a scan of the levels (:mod:`pipeline.levels`). It is plain,
picklable data: the workers use it to turn each block's raw frame into the
statistics columns, and the fitted model keeps it to turn a raw frame into
its features at predict time.

- A numeric column is one feature. Under ``data.missing: impute`` a numeric
  column that had missing entries also gets a missing indicator in the
  statistics, and its missing entries are written as a fixed centre ``c`` (see
  :mod:`pipeline.solvers.imputation` for why this gives every fold's mean
  imputation exactly).
- A categorical column with L sorted levels is L indicator features named
  ``column=level``. All levels are kept (no reference level is dropped): under
  a penalty the coefficients stay identifiable and do not depend on which
  level would have been the reference (glmnet's choice). A missing value is
  the level ``<NA>`` when missing values were seen in training; otherwise, and
  for a level never seen in training, the column's indicators are all zero.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError
from .solvers import MeanImputation

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NA_LEVEL", "Encoding", "describe", "encoding_summary", "from_json", "input_numbers", "is_missing",
           "level_strings", "numeric_column", "to_json"]

NA_LEVEL = "<NA>"
_INPUT = "input"  # where a predict-time frame is (its messages speak of the model, not of the config)


@dataclass(frozen=True)
class Encoding:
    """How raw columns become the statistics columns and the model's features.

    Attributes
    ----------
    columns : tuple of str
        The raw feature columns, in order.
    levels : tuple
        Per column: its sorted levels (a categorical column) or None (numeric).
    imputed : tuple of bool
        Per column: a numeric column with missing entries, imputed by its training mean.
    centers : tuple of float
        Per column: the constant written where an imputed column is missing (0 elsewhere).
    indicators : bool
        Missing indicators of the imputed columns are also features (``data.missing_indicators``).
    fill : tuple of float or None
        Per column: the value a fitted model imputes (the mean over its training rows, for every numeric
        column under ``data.missing: impute``, as a fitted ``SimpleImputer`` does; NaN elsewhere); None
        until fitted.
    impute : bool
        Whether missing entries are imputed (``data.missing: impute``).
    na_values : tuple of str or None
        ``data.na_values`` of a CSV source: text that marked a missing entry in training marks one at predict
        time too (a frame read without them holds it as text). None: nothing beyond NaN and None.
    """

    columns: tuple[str, ...]
    levels: tuple[tuple[str, ...] | None, ...]
    imputed: tuple[bool, ...] = ()
    centers: tuple[float, ...] = ()
    indicators: bool = False
    fill: tuple[float, ...] | None = None
    impute: bool = False
    na_values: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.columns)
        if not self.imputed:
            object.__setattr__(self, "imputed", (False,) * n)
        if not self.centers:
            object.__setattr__(self, "centers", (0.0,) * n)

    # ------------------------------------------------------------ names
    @property
    def imputed_columns(self) -> tuple[str, ...]:
        """The numeric columns with gaps, imputed (each has a missing indicator in the statistics)."""
        return tuple(c for c, imp in zip(self.columns, self.imputed) if imp)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Per column: its first statistics column (a numeric column's value, a categorical one's first level)."""
        widths = [1 if lv is None else len(lv) for lv in self.levels]
        return tuple(int(x) for x in np.cumsum([0, *widths[:-1]])) if widths else ()

    @property
    def encoded_names(self) -> tuple[str, ...]:
        """Feature names before the missing indicators: a numeric column's name, or ``column=level``."""
        out: list[str] = []
        for col, lv in zip(self.columns, self.levels):
            out.extend([col] if lv is None else [f"{col}={level}" for level in lv])
        return tuple(out)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's features: the encoded columns, then ``column=<NA>`` per imputed column if indicated."""
        extra = tuple(f"{c}={NA_LEVEL}" for c in self.imputed_columns) if self.indicators else ()
        return self.encoded_names + extra

    @property
    def statistics_names(self) -> tuple[str, ...]:
        """Names of the statistics columns: the encoded columns, then ``column=<NA>`` per imputed column (its
        missing indicator, the same column as the feature of that name under ``data.missing_indicators``)."""
        return self.encoded_names + tuple(f"{c}={NA_LEVEL}" for c in self.imputed_columns)

    @property
    def statistics_sources(self) -> tuple[str, ...]:
        """The raw column behind each statistics column (for messages about a row's entries)."""
        out: list[str] = []
        for col, lv in zip(self.columns, self.levels):
            out.extend([col] * (1 if lv is None else len(lv)))
        return tuple(out) + self.imputed_columns

    @property
    def n_statistics_columns(self) -> int:
        return len(self.encoded_names) + sum(self.imputed)

    @property
    def imputed_centers(self) -> dict[str, float]:
        """The constant written into each imputed column where it is missing."""
        return {c: x for c, imp, x in zip(self.columns, self.imputed, self.centers) if imp}

    def imputation(self) -> MeanImputation | None:
        """The map from statistics columns to features (None when no column is imputed)."""
        if not any(self.imputed):
            return None
        gappy = [j for j, imp in enumerate(self.imputed) if imp]
        return MeanImputation(len(self.encoded_names), tuple(self.offsets[j] for j in gappy),
                              np.asarray([self.centers[j] for j in gappy], dtype=np.float64), self.indicators)

    def feature_fill(self) -> np.ndarray:
        """Per model feature: the value a fitted model fills a missing entry with (NaN: none), for inputs that
        are already encoded (arrays, or frames of the ``column=level`` features)."""
        out = np.full(len(self.feature_names), np.nan)
        if self.fill is not None:
            for j, at in enumerate(self.offsets):
                if self.levels[j] is None:
                    out[at] = self.fill[j]
        return out

    def fitted(self, feature_means: np.ndarray) -> Encoding:
        """This encoding with the fill values of a model fitted on rows whose feature means are
        ``feature_means`` (an imputed column's mean is the mean of its observed entries)."""
        fill = tuple(float(feature_means[at]) if lv is None and self.impute else math.nan
                     for lv, at in zip(self.levels, self.offsets))
        return dataclasses.replace(self, fill=fill)

    # ----------------------------------------------------------- encode
    @property
    def n_levels(self) -> int:
        """How many of the statistics columns are level indicators."""
        return sum(len(lv) for lv in self.levels if lv is not None)

    def statistics_columns(self, frame: pd.DataFrame, where: str) -> np.ndarray:
        """The block's statistics columns (training side, on a worker).

        Imputed columns are written with their centre where missing and followed by
        their missing indicators; any other missing entry stays NaN in its column (a
        categorical column without the ``<NA>`` level: NaN in all its indicators), for
        ``data.missing`` to refuse or drop the row.

        Written into one array, a level's indicator by its row and code, not stacked from one array per
        column (two more writes of the block: reading 100,000 rows of 1,060 columns into a worker's memory,
        one process, 5.0 → 4.6 s).
        """
        out = np.zeros((len(frame), self.n_statistics_columns))
        for at, width, values, gaps in self._training_parts(frame, where):
            if gaps is None:
                out[:, at] = values
                continue
            seen = np.flatnonzero(values >= 0)
            out[seen, at + values[seen]] = 1.0
            out[np.flatnonzero(gaps), at : at + width] = np.nan  # left for data.missing to refuse or drop
        return out

    def sparse_statistics_columns(self, frame: pd.DataFrame, where: str) -> Any:
        """:meth:`statistics_columns` as a CSR matrix that stores a categorical column's indicators as its one
        level per row (a missing entry without the ``<NA>`` level: one NaN, which marks the row as well), for
        statistics at the cost of the non-zeros (:mod:`pipeline.solvers.sparse_stats`). A number column's
        entries are all stored, so that it counts as dense there (shifted before its products)."""
        from scipy import sparse

        n = len(frame)
        rows, cols, vals = [], [], []
        for at, _, values, gaps in self._training_parts(frame, where):
            r = np.arange(n) if gaps is None else np.flatnonzero((values >= 0) | gaps)
            rows.append(r)
            if gaps is None:
                cols.append(np.full(n, at))
                vals.append(values)
            else:
                cols.append(at + np.maximum(values[r], 0))
                vals.append(np.where(gaps[r], np.nan, 1.0))
        data = np.concatenate(vals) if vals else np.zeros(0)
        index = (np.concatenate(rows), np.concatenate(cols)) if rows else (np.zeros(0, int), np.zeros(0, int))
        return sparse.csr_matrix((data, index), shape=(n, self.n_statistics_columns))

    def _training_parts(self, frame: pd.DataFrame, where: str
                        ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
        """Per statistics column group, in order: its first column, its width, and either a number column's
        values (an imputed one's gaps written as its centre; other gaps NaN) with None, or a categorical
        column's level codes (-1: none) with its gaps that no level stands for; then each imputed column's
        missing indicator, as a number column."""
        for j, (name, lv, at) in enumerate(zip(self.columns, self.levels, self.offsets)):
            if lv is None:
                yield at, 1, self._numbers(frame, j, where, training=True), None
            else:
                yield (at, len(lv), *_level_codes(frame[name], lv))
        base = len(self.encoded_names)
        for k, c in enumerate(self.imputed_columns):
            yield base + k, 1, is_missing(frame[c]).astype(np.float64), None

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's features of a raw frame (predict time): missing entries take the fitted fill values."""
        absent = [c for c in self.columns if c not in frame.columns]
        if absent:
            raise DataError(f"input lacks the model's columns {absent}; it needs {list(self.columns)}.")
        frame = _marked_missing(frame, self.columns, self.na_values)
        blocks = [self._numbers(frame, j, _INPUT, training=False)[:, None] if lv is None else
                  _indicators(frame[name], name, lv) for j, (name, lv) in enumerate(zip(self.columns, self.levels))]
        if self.indicators:
            blocks += [is_missing(frame[c]).astype(np.float64)[:, None] for c in self.imputed_columns]
        return np.hstack(blocks) if blocks else np.empty((len(frame), 0))

    def _numbers(self, frame: pd.DataFrame, j: int, where: str, training: bool) -> np.ndarray:
        """Number column ``j``'s values: in training an imputed column's gaps take its centre (other gaps stay
        NaN); at predict time every gap takes the fitted fill, or is an error without one."""
        name = self.columns[j]
        values = numeric_column(frame[name], name, where)
        missing = ~np.isfinite(values)
        if missing.any():
            if training and self.imputed[j]:
                values = np.where(missing, self.centers[j], values)
            elif not training:
                fill = math.nan if self.fill is None else self.fill[j]
                if math.isnan(fill):
                    raise DataError(f"input column {name!r} has missing or infinite values (NaN, inf), but the "
                                    "model was fitted without data.missing: impute and cannot fill them in; fill "
                                    "them in.")
                values = np.where(missing, fill, values)
        return values


def _marked_missing(frame: pd.DataFrame, columns: Sequence[str], na_values: tuple[str, ...] | None) -> pd.DataFrame:
    """``frame`` with the text entries of ``columns`` that are one of ``na_values`` (blanks stripped) made missing,
    as reading the training CSV with ``data.na_values`` made them; the frame itself when none is."""
    if not na_values:
        return frame
    marks, out = set(na_values), frame
    for c in columns:
        series = frame[c]
        if series.dtype.kind in "OSU" or str(series.dtype).startswith("string"):
            hit = series.notna() & series.astype(str).str.strip().isin(marks)
            if hit.any():
                out = frame.copy() if out is frame else out
                out[c] = series.mask(hit)
    return out


def _indicators(series: pd.Series, name: str, levels: tuple[str, ...]) -> np.ndarray:
    """A categorical input column's indicators at predict time: a level never seen in training, or a gap the
    training rows never had, gives zeros and one warning."""
    codes, missing, text = _codes_and_text(series, levels)
    has_na = NA_LEVEL in levels
    out = np.zeros((len(series), len(levels)))
    seen = codes >= 0
    out[np.flatnonzero(seen), codes[seen]] = 1.0
    unseen = ~seen & ~np.asarray(missing)
    if unseen.any():
        new = sorted(set(np.asarray(text)[unseen]))
        warnings.warn(f"column {name!r} has level(s) {new[:5]}{' …' if len(new) > 5 else ''} not seen in training: "
                      "their indicators are 0.", UserWarning, stacklevel=4)
    if not has_na and missing.any():  # as for an unseen level: training had no gap here to learn from
        warnings.warn(f"column {name!r} has {int(missing.sum())} missing value(s), which its training rows never "
                      "had: their indicators are 0.", UserWarning, stacklevel=4)
    return out


def _codes_and_text(series: pd.Series, levels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Each entry's index in ``levels`` (-1: not a level; a missing entry is the level ``<NA>`` when ``levels``
    has it), which entries are missing, and the entries as level names."""
    import pandas as pd

    text = level_strings(series)
    missing = pd.isna(text)
    if set(levels) <= _BOOLEAN_LEVELS:  # a true/false column given 1/0 (an integer flag, or JSON from a served
        text = text.replace(_FLAG_AS_BOOLEAN)  # model's client): as pandas and NumPy read them, not unseen levels
    if NA_LEVEL in levels:
        text = text.where(~missing, NA_LEVEL)
    codes = pd.Index(list(levels)).get_indexer(text.to_numpy(dtype=object)).astype(np.intp)
    return codes, np.asarray(missing), text


_BOOLEAN_LEVELS = {"True", "False", NA_LEVEL}
_FLAG_AS_BOOLEAN = {"1": "True", "0": "False"}


def _level_codes(series: pd.Series, levels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A training block's level codes (-1: none) and its missing entries that no level stands for."""
    codes, missing, _ = _codes_and_text(series, levels)
    return codes, missing & (NA_LEVEL not in levels)


def level_strings(series: pd.Series) -> pd.Series:
    """A column's values as level names (missing stays missing), the same whatever type a reader gave them:
    numbers by their value (``2007`` for 2007, 2007.0 and the text ``"2007.0"``; ``1.5``), true/false words
    as ``True``/``False`` (``true``, ``TRUE`` and a boolean alike), other text as is (stripped). A CSV read
    as text in training and by ``pandas.read_csv`` at predict time thus gives the same levels.

    Each distinct value is named once (a column has few levels and many rows: a 65,536-row block of eight
    text columns took 0.53 s entry by entry, 0.026 s so)."""
    import pandas as pd

    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    if series.dtype == object and _may_mix_booleans(series) and _holds_flags(uniques):  # 1 == True: one value
        codes, uniques = pd.factorize(series.map(_typed), use_na_sentinel=True)
        uniques = np.array([v[1] if isinstance(v, tuple) else v for v in uniques], dtype=object)
    names = _value_names(pd.Series(uniques, dtype=object)).to_numpy(dtype=object)
    out = np.full(len(series), None, dtype=object)
    present = codes >= 0
    out[present] = names[codes[present]]
    return pd.Series(out, index=series.index, dtype=object)


def _may_mix_booleans(series: pd.Series) -> bool:
    """Whether a text column may hold booleans beside numbers, where ``1 == True`` and ``0 == False`` would be
    factorized as one value (served JSON sending ``1`` in one row and ``true`` in the others named every row by
    whichever came first). pandas' type inference says so in one pass in C; the mixed kinds it names cover
    every such column."""
    from pandas.api.types import infer_dtype

    return infer_dtype(series, skipna=True) in ("mixed", "mixed-integer", "mixed-integer-float")


def _holds_flags(uniques: Any) -> bool:
    """Whether a column's factorized values hold a boolean or a number equal to 0 or 1: only these can have been
    taken for each other (a column of text and other numbers keeps the fast path: 1M rows, 0.26 → 0.05 s)."""
    return any(isinstance(u, (bool, int, float, np.bool_, np.number)) and u in (0, 1) for u in uniques)


def _typed(value: Any) -> Any:
    """A boolean as a key no number equals (:func:`_may_mix_booleans`); anything else as is."""
    return ("bool", bool(value)) if isinstance(value, (bool, np.bool_)) else value


def _value_names(series: pd.Series) -> pd.Series:
    """:func:`level_strings` entry by entry."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return series.map(lambda v: str(bool(v)) if not pd.isna(v) else None).astype(object)
    if pd.api.types.is_numeric_dtype(series):
        return pd.Series(_number_names(series.to_numpy(dtype=np.float64, na_value=np.nan)), index=series.index,
                         dtype=object)
    text = series.astype(object).where(~series.isna(), None).map(lambda v: v if v is None else str(v).strip())
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    named = np.isfinite(numbers)
    out = text.to_numpy(dtype=object).copy()
    out[named] = _number_names(numbers[named])
    lower = text.str.lower().to_numpy(dtype=object)
    out[lower == "true"] = "True"
    out[lower == "false"] = "False"
    return pd.Series(out, index=series.index, dtype=object)


def _number_names(values: np.ndarray) -> np.ndarray:
    """``3`` for whole numbers, ``repr`` otherwise, None for NaN/inf."""
    out = np.empty(values.size, dtype=object)
    for i, v in enumerate(values):
        out[i] = None if not math.isfinite(v) else (str(int(v)) if v.is_integer() else repr(float(v)))
    return out


def input_numbers(frame: pd.DataFrame) -> np.ndarray:
    """A predict-time frame's columns as float64 (gaps, ``pd.NA`` and ``None`` as NaN), where text in a column
    is an error naming it and what the model takes."""
    if not len(frame.columns):
        return np.empty((len(frame), 0))
    return np.column_stack([numeric_column(frame[c], str(c), _INPUT) for c in frame.columns])


def at_row(where: str, position: int) -> str:
    """`` at row 1500`` for the ``position``-th row of the block ``where`` (``"<file> rows 1024-2047"``: rows
    counted from 0, header excluded, as the block's own name counts them); empty where that is not its form."""
    m = re.search(r" rows (\d+)-\d+$", where)
    return f" at row {int(m.group(1)) + position}" if m else ""


def numeric_column(series: pd.Series, name: str, where: str) -> np.ndarray:
    """A numeric column as float64 (missing as NaN); text in it is a one-line error naming the fixes."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(series, errors="coerce")
    bad = coerced.isna() & ~series.isna()
    if bad.any():
        example = series[bad].iloc[0]
        if where == _INPUT:  # a fitted model: nothing in the config can change it
            raise DataError(f"input column {name!r} holds text (e.g. {example!r}) where the model takes numbers; "
                            "pass numbers, or NaN for a missing value (a model fitted with imputation fills it).")
        raise DataError(f"{where}: column {name!r} is numeric elsewhere but holds text here (e.g. {example!r}"
                        f"{at_row(where, _position(series, int(np.argmax(bad.to_numpy()))))}); "
                        f"list it in data.categorical, add {example!r} to data.na_values if it marks a missing "
                        "value, or leave the column out with data.exclude.")
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def _position(series: pd.Series, i: int) -> int:
    """The block position of the series' ``i``-th entry: a block's frame is indexed by its rows' positions, and
    keeps them when the level scan sets aside rows without a target (counted among the kept rows, the row named
    in an error was 58 rows above the one that held the text)."""
    label = series.index[i]
    return int(label) if isinstance(label, int | np.integer) else i


def is_missing(series: pd.Series) -> np.ndarray:
    """Per row: the entry is missing (NaN, inf or None)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series):
        return ~np.isfinite(series.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(series.isna())


def encoding_summary(encoding: Encoding) -> dict[str, Any]:
    """What a sweep records about the encoding: levels per categorical column, imputed columns."""
    return {"categorical_levels": {c: list(lv) for c, lv in zip(encoding.columns, encoding.levels) if lv is not None},
            "imputed_columns": list(encoding.imputed_columns)}


def _first(names: Sequence[str], field: str, shown: int = 10) -> str:
    """At most ``shown`` names, then how many more (a wide table's 2,000 imputed columns made a 13 KB line)."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more (the summary's {field} lists all)" if more > 0 else "")


def describe(encoding: Encoding) -> str:
    """One line for the console: the categorical columns with their level counts, and the imputed columns."""
    cats = [f"{c} ({len(lv)}{', with ' + NA_LEVEL if NA_LEVEL in lv else ''})"
            for c, lv in zip(encoding.columns, encoding.levels) if lv is not None]
    imputed = encoding.imputed_columns
    parts = [f"categorical columns (levels): {_first(cats, 'categorical_levels')}" if cats
             else "no categorical columns"]
    if encoding.impute:
        parts.append(f"gaps (NaN or inf) imputed by each fold's training means: "
                     f"{_first(imputed, 'imputed_columns')}" if imputed else "no feature has missing values to impute")
    return "Columns: " + "; ".join(parts) + "."


def to_json(encoding: Encoding) -> dict[str, Any]:
    """Plain JSON of an encoding (kept in ``model.json``)."""
    return {"columns": list(encoding.columns), "levels": [None if lv is None else list(lv) for lv in encoding.levels],
            "imputed": list(encoding.imputed), "centers": list(encoding.centers), "indicators": encoding.indicators,
            "impute": encoding.impute, **({"na_values": list(encoding.na_values)} if encoding.na_values else {}),
            "fill": None if encoding.fill is None else [None if math.isnan(v) else v for v in encoding.fill]}


def from_json(d: dict[str, Any]) -> Encoding:
    """Inverse of :func:`to_json`."""
    fill = d.get("fill")
    return Encoding(tuple(d["columns"]), tuple(None if lv is None else tuple(lv) for lv in d["levels"]),
                    tuple(bool(v) for v in d["imputed"]), tuple(float(v) for v in d["centers"]),
                    bool(d["indicators"]),
                    None if fill is None else tuple(math.nan if v is None else float(v) for v in fill),
                    bool(d.get("impute", False)), tuple(d["na_values"]) if d.get("na_values") else None)
