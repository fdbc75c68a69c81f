"""Data sources read in row blocks.

The driver only *plans*: it reads metadata (Parquet footers, a CSV header and
its line offsets, ``.npy`` headers) and produces a :class:`DataPlan`, a list
of small picklable :class:`BlockSpec` recipes. Each worker then loads its
blocks with :func:`load_block`; rows are never concatenated in one process.

Sources (``data.source``):

- ``bundled:diabetes``: the Efron et al. (2004) data shipped with regsweep (``bundled:penguins``: the
  Palmer penguins, with text columns and gaps);
- ``synthetic``: ``y = Xβ + noise`` generated on the workers from
  ``data.synthetic`` (row-addressable: row i is the same whatever the block
  size, because rows are generated in fixed chunks of :data:`SYNTH_CHUNK`
  seeded by ``(seed, chunk)``);
- a Parquet file, directory or glob (one block per group of row groups);
- a CSV file with a header (blocks are byte ranges of whole rows; a quoted
  field may span lines);
- ``X.npy`` with ``data.target: y.npy`` (memory-mapped slices).
"""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import functools
import glob as globlib
import io
import math
import os
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DataConfig, FoldsConfig
from .column_kinds import (DECIMAL_COMMA, HEAD_ROWS, Disguise, arrow_kind, categorical_columns, csv_head_kinds,
                           csv_head_values, free_text_candidates, head_rows, is_number, long_csv_fields, na_markers,
                           stored_arrow_schema, too_many_fields, unknown_columns, yaml_list)
from .encoding import Encoding, at_row
from .errors import DataError, RetrainInputError
from .model import SIGNATURE_MAX_COLUMNS
from .targets import check_target_sample

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["BlockData", "BlockSpec", "DataPlan", "check_fold_count", "check_head", "load_block", "plan_data",
           "read_example", "synthetic_coef", "without_time_column"]

SYNTH_CHUNK = 4096
_BUNDLED = {"diabetes": ("diabetes.csv", "progression"), "penguins": ("penguins.csv", "body_mass_g")}


@dataclass(frozen=True)
class BlockSpec:
    """How to load one row block: global rows ``start_row … start_row + n_rows − 1``."""

    index: int
    start_row: int
    n_rows: int
    path: str = ""
    row_groups: tuple[int, ...] = ()  # parquet
    byte_range: tuple[int, int] = (0, 0)  # csv
    local_start: int = 0  # npy / bundled: first row within the file


@dataclass(frozen=True)
class DataPlan:
    """What will be read, decided from metadata alone."""

    kind: str  # bundled | synthetic | parquet | csv | npy | npz
    source: str
    feature_names: tuple[str, ...]
    target: str
    weight: str | None
    group: str | None
    n_rows: int
    blocks: tuple[BlockSpec, ...]
    columns: tuple[str, ...] = ()  # csv: every column in file order
    synthetic: tuple[int, int, int, float, float, int] | None = None
    missing: str = "error"  # data.missing: error | drop | impute
    categorical: tuple[str, ...] = ()  # raw feature columns read as categories
    text_columns: tuple[str, ...] = ()  # the categorical columns stored as text (free text is refused)
    encoding: Encoding | None = None  # decided by the level scan (pipeline.levels); then feature_names are its
    missing_indicators: bool = False
    na_values: tuple[str, ...] | None = None  # CSV strings marking a missing entry (None: pandas' list)
    max_levels: int = 1000
    notes: tuple[str, ...] = ()  # what the plan decided that the user should know (columns left out)
    family: str = "gaussian"  # model.family: how the target is read (pipeline.targets)
    positive_class: Any = None  # binomial: data.positive_class
    target_labels: bool = False  # binomial: the target is stored as text (labels coded once all rows are read)
    target_bool: bool = False  # binomial: the target holds true/false values (classes False and True, not 0 and 1)
    offset: str | None = None  # data.offset or data.exposure: a column (tabular) or a .npy path (array sources)
    exposure: bool = False  # the offset column holds exposures (positive; their log is the offset)
    stratify: bool = False  # binomial row k-fold: folds dealt per class (folds.stratify)
    delimiter: str = ","  # csv: the field separator, found from the header (``;`` and tabs as well as commas)
    decimal: str = "."  # csv: the decimal mark (``,`` in a ``;``-separated file whose numbers are written 3,14)
    array_columns: tuple[int, ...] | None = None  # npy / npz: the source's columns read (None: all; data.exclude)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def raw_features(self) -> tuple[str, ...]:
        """The feature columns as the source stores them (before level indicators)."""
        return self.encoding.columns if self.encoding is not None else self.feature_names

    @property
    def needs_scan(self) -> bool:
        """Whether levels or missing entries must be found on the workers before the statistics pass."""
        return (self.encoding is None and self.kind in ("csv", "parquet", "bundled", "npy")
                and (bool(self.categorical) or self.missing == "impute"))

    @property
    def n_statistics_columns(self) -> int:
        """Columns of each block's statistics (the features, plus missing indicators under imputation)."""
        return self.encoding.n_statistics_columns if self.encoding is not None else self.n_features

    def with_encoding(self, encoding: Encoding) -> DataPlan:
        """This plan once its columns' levels and missing entries are known."""
        return dataclasses.replace(self, encoding=encoding, feature_names=encoding.feature_names)

    @property
    def offset_column(self) -> str | None:
        """The name a model reads its offset (or exposure) by: the column of a tabular source, the file's stem
        (``exposure.npy`` → ``exposure``) beside an array source."""
        if self.offset is None:
            return None
        return Path(self.offset).stem if self.kind in ("npy", "npz") else self.offset

    @property
    def sparse(self) -> bool:
        """Whether the rows are stored sparse (an ``.npz`` source): only the rows engine keeps them so."""
        return self.kind == "npz"


@dataclass(frozen=True)
class BlockData:
    """The rows of one block."""

    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None
    group: np.ndarray | None
    start_row: int
    integer_columns: tuple[bool, ...] = ()  # per feature: stored as integers in the source block
    kept: np.ndarray | None = None  # data.missing: drop: mask over the block's rows (None: all kept)
    dropped_by: tuple[int, int, int, int] = (0, 0, 0, 0)  # rows left out for a missing target, weight, feature,
    #                                                      offset (the first that was missing)
    offset: np.ndarray | None = None  # data.offset (or the log of data.exposure)
    labels: np.ndarray | None = None  # a binomial text target's labels (y then holds 0, NaN where missing)

    @property
    def n_dropped(self) -> int:
        """Rows of this block left out under ``data.missing: drop``."""
        return 0 if self.kept is None else int(self.kept.size - np.count_nonzero(self.kept))


# ------------------------------------------------------------------ plan
def plan_data(cfg: DataConfig, folds: FoldsConfig | None = None, family: str = "gaussian") -> DataPlan:
    """Resolve ``cfg.source`` into blocks, checking paths and columns (metadata only); ``family`` is
    ``model.family`` (a binomial target may be text; an offset or exposure column is read beside it)."""
    plan = _plan_source(cfg, folds.group if folds is not None else None, family)
    offset = cfg.offset or cfg.exposure
    if offset is not None and plan.kind == "synthetic":
        raise DataError("synthetic data have no offset column; unset data.offset / data.exposure.")
    if offset is not None and plan.kind in ("npy", "npz"):
        _check_array_extra(offset, "data.exposure" if cfg.exposure else "data.offset", plan.n_rows)
    plan = dataclasses.replace(plan, missing=cfg.missing, missing_indicators=cfg.missing_indicators,
                               na_values=tuple(cfg.na_values) if cfg.na_values is not None else None,
                               max_levels=cfg.max_levels, family=family, positive_class=cfg.positive_class,
                               offset=offset, exposure=cfg.exposure is not None,
                               stratify=family == "binomial" and folds is not None and folds.stratify
                               and folds.group is None)
    if plan.sparse and cfg.missing == "impute":
        raise DataError("data.missing: impute needs a dense source, but data.source is a sparse .npz; impute before "
                        "saving it, or set data.missing: drop.")
    if isinstance(cfg.categorical, list) and plan.kind not in ("csv", "parquet", "bundled"):
        raise DataError(f"data.categorical lists columns, but a {plan.kind} source has numeric columns only; "
                        "remove data.categorical or use a CSV or Parquet source.")
    if plan.kind in ("csv", "parquet"):
        _check_levels_if_small(plan)
    _check_head_rows(plan)
    if family != "gaussian":
        _check_family_head(plan)
    return plan


def _plan_source(cfg: DataConfig, group: str | None, family: str) -> DataPlan:
    source = cfg.source.strip()
    labels = family == "binomial"
    if source.startswith("bundled:"):
        return _plan_bundled(cfg, source.split(":", 1)[1], group, labels)
    if source == "synthetic":
        return _plan_synthetic(cfg, group)
    paths = _expand(source)
    suffixes = {Path(p).suffix.lower() for p in paths}
    if suffixes <= {".parquet", ".pq"}:
        return _plan_parquet(cfg, source, paths, group, labels)
    if len(paths) == 1 and suffixes <= _TABLE_SUFFIXES:  # the separator is read from the header
        return _plan_csv(cfg, paths[0], group, labels)
    if suffixes == {".npy"} and len(paths) == 1:
        return _plan_npy(cfg, paths[0], group, labels)
    if suffixes == {".npz"} and len(paths) == 1:
        return _plan_npz(cfg, paths[0], group, labels)
    raise DataError(
        f"data.source {source!r} matched {len(paths)} file(s) of type(s) {sorted(suffixes)}; "
        "use one .csv file (or .tsv, .txt: comma, semicolon, tab or pipe separated, with a header line), one X.npy "
        "or sparse X.npz (with data.target: y.npy), or Parquet file(s)"
        + ("; several text tables: concatenate them into one (or save them as Parquet files)."
           if suffixes <= _TABLE_SUFFIXES else _format_fix(suffixes))
    )


_COMPRESSED = frozenset({".gz", ".bz2", ".xz", ".zip", ".zst", ".7z"})
_SPREADSHEETS = frozenset({".xlsx", ".xls", ".xlsm", ".ods"})


def _format_fix(suffixes: set[str]) -> str:
    """The fix for a compressed text table or a spreadsheet, the two forms public data sets come in most often
    besides CSV and Parquet; else nothing more."""
    if suffixes & _COMPRESSED:
        return ("; a compressed file cannot be read in blocks (the workers read a CSV by byte ranges): decompress it "
                "first (gunzip -k, unzip), or save it as Parquet, which is compressed and read by row groups.")
    if suffixes & _SPREADSHEETS:
        return ("; a spreadsheet is not read: save the sheet as CSV, or as Parquet "
                "(pandas.read_excel(path).to_parquet('table.parquet')).")
    return "."


def _expand(source: str) -> list[str]:
    p = Path(source)
    if p.is_dir():
        paths = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in (".parquet", ".pq"))
        if not paths:
            nested = sorted({str(f.parent.relative_to(p)) for f in p.rglob("*") if f.suffix.lower() in (".parquet", ".pq")})
            hint = (f"; its subfolders hold some ({', '.join(nested[:3])}{', ...' if len(nested) > 3 else ''}: a "
                    f"partitioned dataset?), which a glob reads, e.g. data.source: '{source.rstrip('/')}/"
                    f"{'/'.join(['*'] * (nested[0].count('/') + 1))}/*.parquet' (the partition values in the folder "
                    "names are not read: keep them as columns in the files)") if nested else ""
            raise DataError(f"data.source directory {source!r} holds no .parquet files{hint}.")
        return paths
    if any(ch in source for ch in "*?["):
        paths = sorted(globlib.glob(source))
        if not paths:
            raise DataError(f"data.source glob {source!r} matches no files; check the pattern and working directory.")
        return paths
    if not p.exists():
        raise DataError(
            f"data.source {source!r} does not exist (looked in {str(Path.cwd())!r}); "
            "give a path, 'bundled:diabetes' or 'synthetic'."
        )
    if not p.is_file():
        raise DataError(f"data.source {source!r} is not a regular file.")
    return [str(p)]


_TABLE_SUFFIXES = {".csv", ".tsv", ".txt", ".data", ".dat"}  # text tables, read as CSV (UCI's .data files too)


def _row_blocks(n_rows: int, block_rows: int, path: str = "") -> tuple[BlockSpec, ...]:
    starts = range(0, n_rows, block_rows)
    return tuple(
        BlockSpec(index=i, start_row=s, n_rows=min(block_rows, n_rows - s), local_start=s, path=path)
        for i, s in enumerate(starts)
    )


def _choose_columns(
    cfg: DataConfig, columns: list[str], where: str, group: str | None, default_target: str | None = None
) -> tuple[tuple[str, ...], str]:
    target = cfg.target or default_target
    if target is None:
        raise DataError(f"data.target is required for {where}: name the target column (one of {columns}).")
    offset_key = "data.exposure" if cfg.exposure is not None else "data.offset"
    offset = cfg.exposure if cfg.exposure is not None else cfg.offset
    for key, col in (("data.target", target), ("data.weight", cfg.weight), ("folds.group", group),
                     (offset_key, offset)):
        if col is not None and col not in columns:
            raise DataError(unknown_columns(key, [col], columns, where))
    for key, col in (("data.weight", cfg.weight), ("folds.group", group), (offset_key, offset)):
        if col == target:  # a weight, group or offset read from the target fitted the target with itself
            raise DataError(f"{key} {col!r} is the target column (data.target); name another column, or unset {key}.")
    reserved = {target, cfg.weight, group, offset} - {None}
    if cfg.exclude:
        unknown = [c for c in cfg.exclude if c not in columns]
        if unknown:
            raise DataError(unknown_columns("data.exclude", unknown, columns, where))
    if cfg.features is not None:
        missing = [c for c in cfg.features if c not in columns]
        if missing:
            raise DataError(unknown_columns("data.features", missing, columns, where))
        clash = [c for c in cfg.features if c in reserved]
        if clash:
            raise DataError(f"data.features must not include the target, weight, group or offset column, got {clash}.")
        features = tuple(cfg.features)
    else:
        left_out = set(cfg.exclude or ())
        features = tuple(c for c in columns if c not in reserved and c not in left_out)
    if "" in features:
        fix = "remove \"\" from data.features" if cfg.features is not None else "leave it out with data.exclude: [\"\"]"
        raise DataError(f"column {columns.index('') + 1} of {where} has no header, and a feature needs a name (the "
                        f"model's inputs are named): give it a header, or {fix}.")
    if not features:
        raise DataError(f"{where} has no feature columns besides the target/weight/group columns.")
    return features, target


def _refuse_repeating_index(cfg: DataConfig, first: str | None, blank: Sequence[str], unique: Mapping[str, bool],
                            empty: Sequence[str], group: str | None) -> None:
    """An unnamed first column whose values repeat: the index ``to_csv(index=True)`` writes of a frame indexed by
    a key that is not unique (a person id of panel data, 8 rows each), which became a numeric feature with a
    slope. Refused with the fix, as the first column of unique values is left out as row labels."""
    if (first is None or first not in blank or unique.get(first, True) or first in empty or cfg.features is not None
            or first in (cfg.target, cfg.weight, group, cfg.offset, cfg.exposure, *(cfg.exclude or ()))):
        return
    raise DataError(f"the first column has no header and its values repeat: the index to_csv(index=True) writes of "
                    f"a frame indexed by a key that is not unique (an id of several rows each?); leave it out with "
                    f"data.exclude: {yaml_list([first])}, or give it a header in the file to use it (as a feature, "
                    "or as folds.group to keep each id's rows in one fold).")


def _refuse_empty_features(empty: list[str], cfg: DataConfig, where: str) -> None:
    """Feature columns without a single value: unless imputed (then a constant, its coefficient 0), every row
    would be dropped or refused, which the pass would find only after the cluster started, without naming them."""
    if empty and cfg.missing != "impute":
        then = "would leave out every row" if cfg.missing == "drop" else "refuses every row"
        fix = ("remove them from data.features" if cfg.features is not None
               else f"leave them out with data.exclude: {empty}")
        raise DataError(f"{where}: feature column(s) {empty} hold no value in any row, so data.missing: "
                        f"{cfg.missing} {then}; {fix}.")


def _parquet_all_null(metas: Sequence[Any], columns: Sequence[str]) -> list[str]:
    """The ``columns`` that every row group of every file says (in its footer statistics) are all null (none in
    a source without rows: the plan refuses it for that). Each file's column index is built once (per column,
    planning 10,000 columns took 30 s)."""
    candidates, seen = dict.fromkeys(columns), False
    for m in metas:
        meta = m.metadata
        index = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
        for rg in range(meta.num_row_groups):
            group = meta.row_group(rg)
            if group.num_rows == 0:
                continue
            seen = True
            for c in list(candidates):
                st = group.column(index[c]).statistics if c in index else None
                if st is None or not st.has_null_count or st.null_count < group.num_rows:
                    del candidates[c]
            if not candidates:
                return []
    return list(candidates) if seen else []


def _refuse_footer(path: str, column: str, what: Disguise, where: str, n_lines: int = 5) -> None:
    """A value that is not a number only in one of the file's last lines is a line below the table (a total
    ``Total,,,,67356`` or a note ``Source: …``, as spreadsheets and statistics portals export), not a gap: the
    fix is to delete it (naming ``Total`` in data.na_values, as the gap message would say, trained on the total
    with its features imputed)."""
    if not what.markers:
        return
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, io.SEEK_END) - 8192))
        tail = [line for line in f.read().decode("utf-8", errors="replace").splitlines() if line.strip()]
    tokens = [m.strip() for m in what.markers]
    below = [line for line in tail[-n_lines:] if any(t and t in line for t in tokens)]
    if below and what.count <= len(below):
        raise DataError(f"{where}: the line {below[0].strip()[:80]!r} at the end of the file is not a row of the "
                        f"table (a total or a note below it; column {column!r} reads {what}); delete it, and any "
                        "other line below the table.")


def _refuse_disguised(column: str, what: Disguise, where: str, *, is_feature: bool) -> None:
    """A column of numbers that its first lines show as text (:func:`~.column_kinds.numbers_in_disguise`): read
    as text it would become one level per number, or be refused as free text once the sweep has started."""
    levels = " To keep its values as levels instead, list it in data.categorical." if is_feature else ""
    if what.stray:
        markers = ", ".join(map(repr, what.markers))
        one = len(what.markers) == 1
        raise DataError(f"column {column!r} of {where} holds {what}, {'not a number' if one else 'not numbers'}: "
                        f"fix {'it' if one else 'them'} in the file, or if "
                        f"{markers} marks a missing value, name it in data.na_values (e.g. data.na_values: [{markers}, "
                        "NA]) and choose data.missing: impute or drop." + levels)
    if what.markers and what.censored:
        markers = ", ".join(map(repr, what.markers))
        raise DataError(f"column {column!r} of {where} holds {what}: {markers} is a bound (a value suppressed or "
                        "top-coded), not a number: write a number in its place in the file (e.g. half the bound of "
                        "'<5'), or to treat it as missing, name it in data.na_values (e.g. data.na_values: "
                        f"[{markers}, NA]) and choose data.missing: impute or drop." + levels)
    if what.markers:
        markers = ", ".join(map(repr, what.markers))
        raise DataError(f"column {column!r} of {where} holds {what}: if {markers} marks a missing value, name it in "
                        f"data.na_values (e.g. data.na_values: [{markers}, NA]: the list replaces pandas' markers, the "
                        "empty field stays one) and choose data.missing: impute or drop." + levels)
    example = what.example.strip()
    bare = re.sub(r"[$€£¥%]", "", example).strip(" ")  # what the signs leave
    if bare != example and re.fullmatch(r"[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?", bare):
        how = (f"pandas: df[{column!r}] = pd.to_numeric(df[{column!r}].str.replace(r'[$€£¥%,]', '', regex=True)), "
               "then df.to_csv(path, index=False)")
    elif re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", example):
        how = "pandas: read it with pd.read_csv(path, thousands=','), then df.to_csv(path, index=False)"
    elif re.fullmatch(r"[-+]?\d*,\d+", example):
        how = "pandas: read it with pd.read_csv(path, decimal=','), then df.to_csv(path, index=False)"
    else:  # '1.570,50', '1 570', '101,00 €', 'USD 12', '(0.20)', '−0.5': no one reader option undoes these
        how = "in the spreadsheet, format the column as a plain number and export it again" + (
            ", an accounting negative '(0.20)' as '-0.20'" if "(" in example else "") + (
            ", the sign '−' as '-'" if "−" in example else "")
    raise DataError(f"column {column!r} of {where} holds {what}: save them as plain numbers, with a decimal point "
                    f"and no thousands separators, currency or percent signs ({how})." + levels)


def _plan_bundled(cfg: DataConfig, name: str, group: str | None, labels: bool = False) -> DataPlan:
    if name not in _BUNDLED:
        raise DataError(f"unknown bundled dataset {name!r}; available: {', '.join('bundled:' + k for k in _BUNDLED)}.")
    filename, default_target = _BUNDLED[name]
    path = str(resources.files("pipeline.datasets") / filename)
    with open(path) as f:
        columns = _header_columns(f.readline())
        n_rows = sum(1 for _ in f)
    features, target, categorical, text, notes, label_kind = _csv_columns(cfg, path, columns, f"bundled:{name}",
                                                                          group, default_target, labels)
    return DataPlan(
        kind="bundled", source=f"bundled:{name}", feature_names=features, target=target,
        weight=cfg.weight, group=group, n_rows=n_rows,
        blocks=_row_blocks(n_rows, cfg.block_rows, path=path), columns=tuple(columns), categorical=categorical,
        text_columns=text, notes=notes, target_labels=label_kind == "text", target_bool=label_kind == "bool",
    )


def _csv_columns(cfg: DataConfig, path: str, columns: list[str], where: str, group: str | None,
                 default_target: str | None = None, labels: bool = False, delimiter: str = ",", decimal: str = ".",
                 blank: Sequence[str] = ()
                 ) -> tuple[tuple[str, ...], str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str]:
    """Features, target, categorical features, text features and notes of a CSV, from its header and first lines,
    and how a binomial model's classes are read (with ``labels``): :func:`_label_kind`.

    A first column with an empty header holding unique values is row labels (R's ``write.csv`` row names, the
    index pandas' ``to_csv`` writes): left out, with a note. Other unnamed columns (``blank``: named
    ``Unnamed: <i>`` as pandas names them) are left out when they hold no value, else kept under that name.
    """
    head = csv_head_kinds(path, columns, cfg.na_values, delimiter=delimiter, decimal=decimal)
    kinds, unique, disguised = head.kinds, head.unique, head.disguised
    notes: tuple[str, ...] = ()
    if "" in (cfg.exclude or ()):  # data.exclude: [""] names every unnamed column (before they were named)
        cfg = cfg.model_copy(update={"exclude": [*(c for c in cfg.exclude or () if c), *blank]})
    first = columns[0] if columns else None
    if (first is not None and _ROW_LABELS.match(first) and unique[first] and cfg.features is None
            and first not in (cfg.target, cfg.weight, group, cfg.offset, cfg.exposure, *(cfg.exclude or ()))):
        cfg = cfg.model_copy(update={"exclude": [*(cfg.exclude or []), first]})
        named = "has no header" if first in blank else f"is named {first!r}"
        notes = (f"the first column {named} and unique values (row labels, as R's write.csv and pandas' to_csv "
                 "write them): left out.",)
    _refuse_repeating_index(cfg, first, blank, unique, head.empty, group)
    cfg, unnamed_notes = _unnamed_columns(cfg, columns, blank, head.empty)
    features, target = _choose_columns(cfg, columns, where, group, default_target)
    notes += unnamed_notes
    notes += tuple(f"column {c!r} holds a different whole number in each of its first rows, close together (a row "
                   f"or customer identifier?): it is a feature; leave it out with data.exclude: {yaml_list([c])} if "
                   "it names rows." for c in features if head.counters[c] and cfg.features is None)
    listed = () if isinstance(cfg.categorical, str) else tuple(cfg.categorical)
    notes += tuple(f"column {c!r} holds codes written with leading zeros (e.g. {code!r}): read as numbers they are "
                   f"one linear feature; list it in data.categorical to keep them as levels, or leave it out with "
                   f"data.exclude: {yaml_list([c])}."
                   for c in features if (code := head.codes.get(c)) and c not in listed)
    notes += tuple(f"column {c!r}: {head.none_words.get(c, 'None')!r} ({k} of its first rows) {_READ_AS_GAP}; if "
                   "it is a level (no airbags, North America, Namibia), set data.na_values to the "
                   "markers that do mean a gap in this file (an empty field always does: e.g. data.na_values: "
                   f"[{'NULL' if head.none_words.get(c) == 'NA' else 'NA'}])."
                   for c, k in head.nones.items() if c in features)
    for c in (target, cfg.weight, cfg.offset, cfg.exposure, *features):
        if c is not None and c in disguised and c not in listed:
            _refuse_footer(path, c, disguised[c], where)
            _refuse_disguised(c, disguised[c], where, is_feature=c in features)
    _refuse_empty_features([c for c in features if c in head.empty], cfg, where)
    categorical = categorical_columns(kinds, features, target, cfg.weight, cfg.categorical, where, labels)
    return (features, target, categorical, free_text_candidates(categorical, kinds, cfg.categorical), notes,
            _label_kind(kinds.get(target), labels))


def _label_kind(kind: str | None, labels: bool) -> str:
    """How a binomial target's classes are read: ``text`` (labels coded once all rows are read), ``bool``
    (true/false values: the classes False and True, as ``pipeline.fit`` names them) or ``numeric``."""
    if not labels:
        return "numeric"
    return "text" if kind in ("text", "dictionary") else "bool" if kind == "bool" else "numeric"


def _unnamed_columns(cfg: DataConfig, columns: Sequence[str], blank: Sequence[str],
                     empty: Sequence[str]) -> tuple[DataConfig, tuple[str, ...]]:
    """The unnamed columns of a CSV (``blank``) besides row labels: those without a single value (every line
    ending in the separator, as spreadsheets export; several in a row as UCI's air quality data) are left out;
    one with values is kept as the feature pandas names (``Unnamed: 3``), so that a frame read by
    ``pandas.read_csv`` predicts. Each with a note."""
    if cfg.features is not None:  # only the listed columns are read
        return cfg, ()
    left_out = set(cfg.exclude or ())
    named = [c for c in blank if c not in left_out]
    gone = [c for c in named if c in empty]
    kept = [c for c in named if c not in empty]
    notes: tuple[str, ...] = ()
    if gone:
        cfg = cfg.model_copy(update={"exclude": [*(cfg.exclude or []), *gone]})
        where = ", ".join(str(columns.index(c) + 1) for c in gone)
        notes += (f"column{'s' if len(gone) > 1 else ''} {where} {'have' if len(gone) > 1 else 'has'} no header and no "
                  "value in any row (lines that end with a separator, as spreadsheets export them): left out.",)
    notes += tuple(f"column {columns.index(c) + 1} has no header: it is the feature {c!r}, as pandas names it; name it "
                   f"in the file, or leave it out with data.exclude: {yaml_list([c])}." for c in kept)
    return cfg, notes


def _check_levels_if_small(plan: DataPlan) -> None:
    """The level scan run here when the table is small (at most :data:`HEAD_ROWS` rows) and has text columns:
    free text and too many levels are then refused before the cluster starts, by the scan's own rules on the
    rows the workers will scan (the encoding is still found there, as for any table)."""
    if plan.n_rows <= HEAD_ROWS and plan.text_columns:
        from .levels import encoding_from_scan, merge_scans, scan_block

        encoding_from_scan(plan, merge_scans([scan_block(plan, spec) for spec in plan.blocks]))


_HEAD_FIELDS = 20_000  # fields the head check reads at most (200 rows of 100 columns, 9 ms by the csv module; it
#                       is an early word, the data pass checks every row)


def check_fold_count(plan: DataPlan, k: int) -> None:
    """K folds need at least K rows (``check-config`` says so too, as the sweep does before the cluster starts)."""
    if plan.n_rows < 2:  # folds.k is at least 2: lowering it cannot help
        raise DataError(f"the data have {plan.n_rows} row{'' if plan.n_rows == 1 else 's'}, and cross-validation "
                        "needs at least 2 (folds.k ≥ 2), many more for a useful model; add rows.")
    if plan.n_rows < k:
        raise DataError(f"folds.k={k} needs at least {k} rows, but the data have {plan.n_rows}; lower folds.k.")
    if plan.group is not None and plan.n_rows <= HEAD_ROWS:
        groups = _small_table_groups(plan)
        if groups is not None and groups < k:  # the pass's own words; on a small table, before the cluster starts
            raise DataError(f"folds.group {plan.group!r} has {groups} distinct groups, fewer than folds.k={k}; lower "
                            "folds.k or use row k-fold (folds.group: null).")


def _small_table_groups(plan: DataPlan) -> int | None:
    """The distinct values of a small table's group column, gaps left out (a 24-row table's 6 groups against
    folds.k = 12 were found only after the cluster started); None for a source read otherwise. Rows the pass
    leaves out can only lower the count, so a count below K here is one there."""
    if plan.kind == "npy" and plan.group is not None:
        values = np.asarray(np.load(plan.group, allow_pickle=False))
        return len({v for v in values.tolist() if v == v})
    if plan.kind == "parquet":
        import pyarrow.parquet as pq

        return len({v for path in sorted({b.path for b in plan.blocks})
                    for v in pq.read_table(path, columns=[plan.group]).column(0).to_pylist() if v is not None and v == v})
    if plan.kind != "csv":
        return None
    j, na = plan.columns.index(plan.group), na_markers(plan.na_values)
    with open(plan.blocks[0].path, newline="", encoding="utf-8-sig", errors="replace") as f, long_csv_fields():
        reader = csv.reader(f, delimiter=plan.delimiter, skipinitialspace=True)
        next(reader, None)
        return len({row[j] for row in reader if len(row) > j and row[j] not in na})


_READ_AS_GAP = "is read as a gap, as pandas reads it"  # a note on a level such as 'None' or 'NA', and its gap error


def _check_head_rows(plan: DataPlan, n: int = HEAD_ROWS) -> None:
    """The source's first ``n`` rows (within its first block) checked before the cluster starts, in the data
    pass's words, for what fails the whole table there anyway, after the cluster started (on a remote cluster,
    after its queue) and every block before it was read: a negative weight, and under ``data.missing: error``
    (the default) a gap (an NA marker, NaN or inf in a feature, the target or the weight). A text value in a
    numeric column is not a gap here: the pass names it in its own way. Read without pandas (the csv module,
    pyarrow or numpy), whose import would cost the driver 0.3 s before the cluster starts."""
    error = plan.missing == "error"
    group = plan.group if plan.kind in ("csv", "bundled", "parquet") else None  # a gap there fails any rule
    if plan.kind not in ("csv", "bundled", "parquet", "npy", "npz") or not error and plan.weight is None \
            and group is None:
        return
    n = min(n, plan.blocks[0].n_rows)
    wanted = [*plan.raw_features, plan.target, *([plan.weight] if plan.weight else []), *([group] if group else [])]
    if plan.kind in ("npy", "npz"):
        gaps, y, w, where = _array_head_gaps(plan, n)
        gaps |= {plan.target: ~np.isfinite(y), **({plan.weight: ~np.isfinite(w)} if w is not None and plan.weight
                                                   else {})}
    else:
        text = {*plan.categorical, *([plan.target] if plan.target_labels else [])}
        n = min(n, max(50, _HEAD_FIELDS // len(wanted)))  # a table of more than 20 columns: fewer rows
        head = _parquet_head(plan.blocks[0].path, wanted, n) if plan.kind == "parquet" else csv_head_values(
            plan.blocks[0].path, list(plan.columns), wanted, n, na_markers(plan.na_values), plan.delimiter,
            plan.decimal, numbers=[plan.weight] if plan.weight else [])
        m = next(iter(head.values()))[0].size if head else 0
        if m == 0:
            return
        where = f"{plan.source} rows 0-{m - 1}"
        if group and head[group][0].any():  # the pass's words (folds.group_keys), before the cluster starts
            shown = _rows_shown(np.flatnonzero(head[group][0]))
            raise DataError(f"{where}: folds.group {group!r} is empty at rows {shown} (counted from 0); every row "
                            "needs one: fill them in the data or leave those rows out of it (data.missing: drop does "
                            "not apply to the group column), or use row k-fold (folds.group: null).")
        gaps = {c: head[c][0] | (np.isinf(head[c][1]) if c not in text else False) for c in wanted if c != group}
        w = head[plan.weight][1] if plan.weight else None
    found = [(c, np.flatnonzero(mask)) for c, mask in gaps.items() if mask.any()]
    if error and found:
        features = any(c not in (plan.target, plan.weight) for c, _ in found)
        levels = [m for m in plan.notes if _READ_AS_GAP in m and any(m.startswith(f"column {c!r}:") for c, _ in found)]
        fix = _gap_fix(features, imputable=not plan.sparse)
        raise DataError(f"{where}: {_gap_detail(found, header=plan.kind not in ('npy', 'npz'))}; {fix}."
                        + "".join(f" Note: {m}" for m in levels))
    _check_weights(plan, w, 0, where)


def _array_head_gaps(plan: DataPlan, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, str]:
    """The first ``n`` rows of an ``.npy`` or sparse ``.npz`` source: its NaN or inf entries per feature (a
    sparse matrix's stored values: a NaN in one passed check-config and stopped the sweep after its cluster had
    started, naming no column), the target, the weights, and where they are."""
    if plan.kind == "npy":
        X, y, w, _, _, where = _npy_block(plan, BlockSpec(0, 0, n, path=plan.blocks[0].path))
        return {name: ~np.isfinite(X[:, j]) for j, name in enumerate(plan.feature_names)}, y, w, where
    matrix = _sparse_matrix(plan.source, Path(plan.source).stat().st_mtime)[:n]
    if plan.array_columns is not None:
        matrix = matrix[:, plan.array_columns]
    matrix = matrix.tocsr()
    gaps: dict[str, np.ndarray] = {}
    for r, c in zip(*(a.tolist() for a in _stored_nonfinite(matrix))):
        gaps.setdefault(plan.feature_names[c], np.zeros(matrix.shape[0], dtype=bool))[r] = True
    y, w, _, where = _array_extras(plan, slice(0, matrix.shape[0]))
    return gaps, y, w, where


def _parquet_head(path: str, columns: Sequence[str], n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` rows of Parquet ``columns``: each as (missing, its values as float64, NaN for text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    batch = next(pq.ParquetFile(path).iter_batches(batch_size=n, columns=list(columns)), None)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if batch is None:
        return out
    for c in columns:
        col = batch.column(c)
        missing = np.asarray(col.is_null(nan_is_null=True).to_numpy(zero_copy_only=False), dtype=bool)
        numeric = (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)
                   or pa.types.is_decimal(col.type))
        if pa.types.is_decimal(col.type):  # through its text, as _decimals_as_floats
            col = col.cast(pa.string())
        values = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64) if numeric \
            else np.full(len(col), np.nan)
        out[c] = (missing, np.where(missing, np.nan, values))
    return out


def _check_family_head(plan: DataPlan, n: int = HEAD_ROWS) -> None:
    """A binomial or Poisson target, and an exposure, checked on the source's first ``n`` rows, before the
    cluster starts: a third class, a negative count or an exposure <= 0 there fails the whole table, and the
    data pass would find it only after reading every block (minutes at 10⁸ rows). What only all rows can tell
    (one class, all counts zero, the positive class) stays with the pass. Rows the pass leaves out (a missing
    target, weight or offset; under ``data.missing: drop`` a missing feature) do not count here either, so this
    never refuses a table the pass accepts."""
    if plan.kind not in ("csv", "bundled", "parquet", "npy"):
        return
    n = min(n, plan.blocks[0].n_rows)  # within the first block: pandas infers no other column types than there
    if plan.kind == "npy":
        spec = BlockSpec(0, 0, n, path=plan.blocks[0].path)
        where = f"{plan.source} rows 0-{n - 1}"
        X, y, w, _, _, _ = _npy_block(plan, spec)
        labels, offset = None, _array_offset(plan, spec)
        features_ok = np.isfinite(X).all(axis=1)
    else:
        frame = _head_frame(plan, n)
        if frame is None or len(frame) == 0:
            return
        spec = BlockSpec(0, 0, len(frame), path=plan.blocks[0].path)
        where = f"{plan.source} rows 0-{len(frame) - 1}"
        y, labels = _target(frame, plan, where)
        w = None if plan.weight is None else _numeric(frame, (plan.weight,), where, "data.weight")[:, 0]
        offset = None if plan.offset is None else _numeric(frame, (plan.offset,), where, _offset_key(plan))[:, 0]
        features_ok = _features_present(frame, plan)
    kept = np.isfinite(y) & (np.isfinite(w) if w is not None else True)  # (a missing text label: y is NaN)
    if offset is not None:  # the pass's rule: a missing offset leaves its row out, a value <= 0 is an error
        kept &= ~_checked_offset(plan, offset, spec, where)[1]
    if plan.missing == "drop":
        kept &= features_ok
    check_target_sample(plan.family, y, labels, kept, name=f"data.target {plan.target!r}", where=where,
                        positive_class=plan.positive_class, booleans=plan.target_bool)


def _head_frame(plan: DataPlan, n: int) -> pd.DataFrame | None:
    """The first ``n`` rows of a CSV or Parquet source's needed columns, read as its blocks are."""
    import pandas as pd

    path = plan.blocks[0].path
    try:
        if plan.kind == "parquet":
            import pyarrow.parquet as pq

            batch = next(pq.ParquetFile(path).iter_batches(batch_size=n, columns=_needed_columns(plan)), None)
            if batch is None:
                return None  # no rows (_read_frame)
            import pyarrow as pa

            return _decimals_as_floats(pa.Table.from_batches([batch])).to_pandas(ignore_metadata=True)
        # the header as the plan read it (names stripped), then the rows as a block's are parsed
        return pd.read_csv(path, header=None, skiprows=1, names=list(plan.columns), nrows=n,
                           usecols=_needed_columns(plan), **_csv_options(plan))
    except (OSError, ValueError, ArithmeticError) as e:  # pandas' and pyarrow's parse errors derive from these
        raise DataError(f"{path}: cannot parse its first {n} rows: {e}") from e


def _features_present(frame: pd.DataFrame, plan: DataPlan) -> np.ndarray:
    """Rows whose every feature is present (a finite number, or a level of a categorical column)."""
    import pandas as pd

    ok = np.ones(len(frame), dtype=bool)
    for c in plan.raw_features:
        col = frame[c]
        ok &= col.notna().to_numpy() if c in plan.categorical else np.isfinite(
            pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64))
    return ok


def _plan_synthetic(cfg: DataConfig, group: str | None) -> DataPlan:
    s = cfg.synthetic
    if cfg.weight is not None or group is not None:
        raise DataError("synthetic data have no weight or group column; unset data.weight and folds.group.")
    names = tuple(f"x{j}" for j in range(s.n_features))
    return DataPlan(
        kind="synthetic", source="synthetic", feature_names=names, target="y", weight=None, group=None,
        n_rows=s.n_rows, blocks=_row_blocks(s.n_rows, cfg.block_rows),
        synthetic=(s.n_rows, s.n_features, s.n_informative, s.correlation, s.noise, s.seed),
    )


def _plan_parquet(cfg: DataConfig, source: str, paths: list[str], group: str | None, labels: bool = False) -> DataPlan:
    import pyarrow.parquet as pq

    metas = []
    for p in paths:
        try:
            metas.append(pq.ParquetFile(p))
        except Exception as e:
            raise DataError(f"cannot read Parquet file {p!r}: {e}") from e
    first = metas[0].schema_arrow
    for p, m in zip(paths[1:], metas[1:]):
        if not m.schema_arrow.equals(first) and (why := _schema_difference(first, m.schema_arrow, paths[0], p)):
            raise DataError(f"Parquet files must share one schema, but {p!r} differs from {paths[0]!r}: {why}; "
                            "rewrite them with the same columns and types.")
    columns, notes = _without_pandas_index(cfg, first, group)
    _check_unique_columns(columns, source)
    features, target = _choose_columns(cfg, columns, source, group)
    stored = stored_arrow_schema(metas[0].metadata)
    types = {f.name: f.type for f in first} | ({f.name: f.type for f in stored} if stored is not None else {})
    kinds = {c: arrow_kind(types[c]) for c in columns}  # by name, once (a lookup per column was O(p²))
    categorical = categorical_columns(kinds, features, target, cfg.weight, cfg.categorical, repr(source), labels)
    label_kind = _label_kind(kinds.get(target), labels)
    text_target = label_kind == "text"
    _refuse_empty_features(_parquet_all_null(metas, features), cfg, repr(source))
    if cfg.missing == "error":
        numeric = [c for c in features if c not in categorical]
        checked = (*numeric, *((target,) if not text_target else ()), *(c for c in (cfg.weight,) if c))
        _parquet_nonfinite_from_footers(paths, metas, checked)
    blocks: list[BlockSpec] = []
    start = 0
    for p, m in zip(paths, metas):
        groups: list[int] = []
        rows = 0
        for rg in range(m.metadata.num_row_groups):
            groups.append(rg)
            rows += m.metadata.row_group(rg).num_rows
            if rows >= cfg.block_rows or rg == m.metadata.num_row_groups - 1:
                if rows:
                    blocks.append(BlockSpec(len(blocks), start, rows, path=p, row_groups=tuple(groups)))
                start += rows
                groups, rows = [], 0
    if start == 0:
        raise DataError(f"data.source {source!r} has zero rows.")
    return DataPlan(
        kind="parquet", source=source, feature_names=features, target=target, weight=cfg.weight,
        group=group, n_rows=start, blocks=tuple(blocks), columns=tuple(columns), categorical=categorical,
        text_columns=free_text_candidates(categorical, kinds, cfg.categorical), target_labels=text_target,
        target_bool=label_kind == "bool", notes=notes,
    )


def _without_pandas_index(cfg: DataConfig, schema: Any, group: str | None) -> tuple[list[str], tuple[str, ...]]:
    """A Parquet schema's columns without the index pandas stored beside them (``to_parquet`` keeps a frame's
    index unless it is a plain range: ``__index_level_0__`` for a filtered frame's row numbers, or the index's
    name), with a note: row labels, as a CSV's unnamed first column. One the config names is kept."""
    index = [c for c in ((schema.pandas_metadata or {}).get("index_columns") or []) if isinstance(c, str)]
    named = {cfg.target, cfg.weight, group, cfg.offset, cfg.exposure, *(cfg.features or ()), *(cfg.exclude or ())}
    dropped = [c for c in index if c in schema.names and c not in named]
    if not dropped:
        return list(schema.names), ()
    return ([c for c in schema.names if c not in dropped],
            (f"the index pandas stored with the rows ({', '.join(map(repr, dropped))}, to_parquet's row labels) is "
             "left out; name it in data.features to use it.",))


def _schema_difference(a: pa.Schema, b: pa.Schema, path_a: str, path_b: str) -> str:
    """The first column that differs between two Parquet schemas in a way a block's reader cannot take, in
    words; empty when none does. The order of the columns does not matter (a delivery written with its columns
    in another order was refused); numbers are numbers whatever their width (pandas writes an integer column
    as ``double`` once a delivery has a gap in it, and every block is read as float64) and text is text
    (``string``, ``large_string``, ``dictionary``: a categorical column in one file, ``str`` in another)."""
    names_a, names_b = set(a.names), set(b.names)
    for name in a.names:
        if name not in names_b:
            return f"column {name!r} is in {path_a!r} but not in {path_b!r}"
    for name in b.names:
        if name not in names_a:
            return f"column {name!r} is in {path_b!r} but not in {path_a!r}"
    for fa in a:  # by name: every reader of a block asks for its columns by name, in any file's order
        fb = b.field(fa.name)
        ka, kb = _read_as(fa.type), _read_as(fb.type)
        if fa.type != fb.type and (ka != kb or ka == "other"):
            return f"column {fa.name!r} is {fa.type} in {path_a!r} but {fb.type} in {path_b!r}"
    return ""


def _read_as(typ: pa.DataType) -> str:
    """What a block's reader makes of an Arrow type: numbers (integers, floats), text, or else (booleans stay
    apart: ``auto`` reads them as categories, whose levels ``True``/``False`` no number would give)."""
    import pyarrow as pa

    return arrow_kind(typ.value_type if pa.types.is_dictionary(typ) else typ)


_ROW_LABELS = re.compile(r"^(|Unnamed: 0)$")  # a first column pandas or R wrote for the row labels


def _check_header(columns: Sequence[str], cfg: DataConfig, path: str) -> None:
    """A first line of numbers only, without the target among them, is data (UCI's ``.data`` files have no
    header): the plan would otherwise name columns after the first row's values and refuse repeated ones."""
    if len(columns) > 1 and (cfg.target is None or cfg.target not in columns) and all(map(is_number, columns)):
        shown = ", ".join(repr(c) for c in columns[:5]) + (", ..." if len(columns) > 5 else "")
        raise DataError(f"the first line of CSV file {path!r} holds numbers only ({shown}): the file seems to have no "
                        "header line; add one naming the columns (pandas: pd.read_csv(path, header=None, "
                        "names=[...]).to_csv(new_path, index=False)).")


def _check_unique_columns(columns: Sequence[str], where: str) -> None:
    dup = sorted(c for c, n in collections.Counter(columns).items() if n > 1)
    if dup:
        raise DataError(f"{where} has several columns named {dup}; rename them so that each name is used once.")


def _parquet_nonfinite_from_footers(paths: Sequence[str], metas: Sequence[object], used: Sequence[str]) -> None:
    """NaN/inf found from the row-group statistics alone (no data read), before any worker starts.

    pandas writes NaN as null, and writers record min/max (so ±inf); NaN stored
    as a float value is not in the statistics and is caught when the block is read.
    """
    start = 0
    for path, m in zip(paths, metas):
        meta = m.metadata  # type: ignore[attr-defined]
        index = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
        for rg in range(meta.num_row_groups):
            group = meta.row_group(rg)
            for col in used:
                st = group.column(index[col]).statistics if col in index else None
                if st is None:
                    continue
                nulls = st.has_null_count and st.null_count > 0
                infinite = st.has_min_max and isinstance(st.min, float) and not (
                    math.isfinite(st.min) and math.isfinite(st.max))
                if nulls or infinite:
                    what = f"{st.null_count} null/NaN value(s)" if nulls else "inf values"
                    raise DataError(
                        f"{path}: column {col!r} holds {what} in rows {start}-{start + group.num_rows - 1} "
                        f"(row group {rg}; rows counted from 0 over all files); remove or impute them, or set "
                        "data.missing: drop to leave those rows out."
                    )
            start += group.num_rows


def _plan_csv(cfg: DataConfig, path: str, group: str | None, labels: bool = False) -> DataPlan:
    """Scan line offsets once (no parsing) so every block is a byte range of whole rows.

    Trailing blank lines are ignored; a blank line inside the data is reported
    when its block is read (the row count would not match the plan).
    """
    try:
        return _plan_csv_file(cfg, path, group, labels)
    except OSError as e:
        raise DataError(f"cannot read CSV file {path!r}: {e.strerror or e}; check the path and its permissions.") from e


def _header_columns(line: str, delimiter: str = ",") -> list[str]:
    """A CSV header line's column names, read as pandas reads them: a quoted name may hold commas
    (``"x,2"``) and doubled quotes (``"a ""b"" c"`` is ``a "b" c``); the surrounding spaces of a name are
    dropped (pandas keeps trailing ones: a model matches such a frame's columns by their stripped names)."""
    return [c.strip() for c in next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter,
                                               skipinitialspace=True), [])]


_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}  # besides the comma, as spreadsheets export them


def _decimal_of(path: str, delimiter: str, n_lines: int = 200) -> str:
    """The decimal mark of a file separated by ``;``, tabs or pipes: ``,`` when its first lines write numbers
    ``3,14`` and never ``3.14`` (European spreadsheets export both the ``;`` and the comma; UCI's air quality
    data; a tab-separated export the same way); else ``.``."""
    if delimiter == ",":
        return "."
    commas = points = 0
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f, long_csv_fields():
        reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
        next(reader, None)
        for _, row in zip(range(n_lines), reader):
            commas += sum(1 for v in row if DECIMAL_COMMA.match(v))
            points += sum(1 for v in row if _DECIMAL_POINT.match(v))
    return "," if commas and not points else "."


_DECIMAL_POINT = re.compile(r"^[-+]?\d*\.\d+([eE][-+]?\d+)?$")


def _delimiter_of(header: str) -> str:
    """The field separator of a CSV from its header line: the one of ``,`` and :data:`_DELIMITERS` that splits it
    into the most columns, the comma on a tie (UCI's wine quality and bank marketing files use ``;``, as European
    spreadsheets export, and a name there may hold a comma: ``Price (€, excl. VAT);Area``; ``.tsv`` files tabs)."""
    return max((",", *_DELIMITERS), key=lambda sep: len(_header_columns(header, sep)))


def _plan_csv_file(cfg: DataConfig, path: str, group: str | None, labels: bool) -> DataPlan:
    if Path(path).stat().st_size == 0:
        raise DataError(f"CSV file {path!r} is empty; it needs a header line and data rows.")
    end = _end_of_data(path)
    with open(path, "rb") as f:
        header = f.readline()
        if header.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(f"CSV file {path!r} is UTF-16 text (as Excel's 'Unicode Text' saves it); save it as "
                            "'CSV UTF-8', or convert it: iconv -f UTF-16 -t UTF-8 in.csv > out.csv.")
        if re.fullmatch(rb"(\xef\xbb\xbf)?sep=.\r?\n?", header):
            hint = header.strip().decode(errors="replace").lstrip("\ufeff")
            raise DataError(f"CSV file {path!r} starts with Excel's separator line {hint!r}; delete that first line, "
                            "so that the header is the first line.")
        if b"\r" in header.rstrip(b"\r\n"):
            raise DataError(f"CSV file {path!r} uses CR-only line endings; convert it to LF or CRLF line endings.")
        data_start = len(header)
        offsets, n_rows, quoted_newlines = _scan_lines(f, path, data_start, end, cfg.block_rows)
    try:
        text = header.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"CSV file {path!r}: the header line is not UTF-8 text ({e}); save the file as UTF-8.") from e
    delimiter = _delimiter_of(text)
    decimal = _decimal_of(path, delimiter)
    if quoted_newlines:
        offsets, n_rows = _scan_records(path, data_start, end, cfg.block_rows, delimiter)
    columns = _header_columns(text, delimiter)
    blank = [f"Unnamed: {i}" for i, c in enumerate(columns) if not c]  # as pandas names them
    columns = [c or f"Unnamed: {i}" for i, c in enumerate(columns)]
    _check_header(columns, cfg, path)
    _check_unique_columns(columns, f"CSV file {path!r}")
    if n_rows == 0:
        raise DataError(f"CSV file {path!r} has a header but zero data rows.")
    features, target, categorical, text_columns, notes, label_kind = _csv_columns(
        cfg, path, columns, repr(path), group, labels=labels, delimiter=delimiter, decimal=decimal, blank=blank)
    if delimiter != ",":
        notes = (f"read as {_DELIMITERS[delimiter]}-separated: its header splits into the most columns so"
                 + (", and with decimal commas (3,14): its numbers are written so." if decimal == "," else "."),
                 *notes)
    bounds = [data_start] + [o for o in offsets if o < end] + [end]
    blocks = []
    start = 0
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        rows = min(cfg.block_rows, n_rows - start)
        blocks.append(BlockSpec(i, start, rows, path=path, byte_range=(a, b)))
        start += rows
    return DataPlan(
        kind="csv", source=path, feature_names=features, target=target, weight=cfg.weight, group=group,
        n_rows=n_rows, blocks=tuple(blocks), columns=tuple(columns), categorical=categorical,
        text_columns=text_columns, notes=notes, target_labels=label_kind == "text",
        target_bool=label_kind == "bool", delimiter=delimiter, decimal=decimal,
    )


def _scan_lines(f: Any, path: str, data_start: int, end: int, block_rows: int) -> tuple[list[int], int, bool]:
    """The data lines' scan: where blocks start (just past every ``block_rows``-th row's newline), the number of
    rows (lines that are not empty: pandas skips an empty line, ``\\n`` or ``\\r\\n``, as two files joined
    leave one), and whether a quoted field may span lines, which the lines then do not count.

    A field quoted across a newline leaves an odd number of quote characters before that newline; so does a
    stray quote in an unquoted field (``55" TV``, which pandas reads as a literal). Either makes the rows
    records rather than lines (:func:`_scan_records`); a file whose every newline follows an even number of
    quotes keeps this vectorised scan (its cost: one more comparison per byte, and a search only in chunks
    holding quotes)."""
    offsets: list[int] = []
    n_newlines, n_lines, quotes, odd = 0, 0, 0, False
    pos, line_start, open_first = data_start, data_start, 0
    utf8 = codecs.getincrementaldecoder("utf-8")()
    while pos < end:
        chunk = f.read(min(1 << 24, end - pos))
        _check_utf8(utf8, chunk, path, n_newlines)
        data = np.frombuffer(chunk, dtype=np.uint8)
        nl = np.flatnonzero(data == 10)
        q = np.flatnonzero(data == 34)
        if q.size and not odd:
            odd = bool(np.any((np.searchsorted(q, nl) + quotes) & 1))
        quotes += q.size
        ends = nl + (pos + 1)  # just past each newline
        if ends.size:
            starts = np.concatenate(([line_start], ends[:-1]))
            first = np.where(starts >= pos, data[np.minimum(starts - pos, data.size - 1).clip(0)], open_first)
            ends = ends[~_blank_lines(f, chunk, pos, starts, ends, first)]
            line_start = int(nl[-1]) + pos + 1
        if pos <= line_start < pos + data.size:  # the first byte of the line still open at the chunk's end
            open_first = int(data[line_start - pos])
        # every block_rows-th row's end starts a new block
        first_idx = block_rows - n_lines % block_rows - 1
        offsets.extend(int(o) for o in ends[first_idx::block_rows])
        n_lines += ends.size
        n_newlines += nl.size
        pos += len(chunk)
    _check_utf8(utf8, b"", path, n_newlines, final=True)
    odd = odd or bool(quotes & 1)  # a stray quote, then a quoted newline on the last line (no newline after it)
    return offsets, (n_lines + 1 if end > data_start else 0), odd  # the last line ends at `end`, no newline


def _blank_lines(f: Any, chunk: bytes, pos: int, starts: np.ndarray, ends: np.ndarray,
                 first: np.ndarray) -> np.ndarray:
    """Which of the lines ``[starts, ends)`` (absolute offsets; the chunk read at ``pos`` holds their newlines,
    ``first`` their first bytes) hold only spaces, tabs and their line end: pandas skips them. Only lines that
    start with such a byte are looked at (a data line does not), so a file without them pays two comparisons a
    line; one begun in an earlier chunk is read again from the file."""
    blank = (ends - starts == 1) | np.isin(first, (9, 13, 32))
    for i in np.flatnonzero(blank & (ends - starts > 1)):
        a, b = int(starts[i]), int(ends[i])
        line = chunk[a - pos:b - pos] if a >= pos else os.pread(f.fileno(), b - a, a)
        blank[i] = not line.strip(b" \t\r\n")
    return blank


def _scan_records(path: str, data_start: int, end: int, block_rows: int,
                  delimiter: str = ",") -> tuple[list[int], int]:
    """:func:`_scan_lines`' block starts and row count for a CSV whose quoted fields may span lines (free text:
    reviews, addresses, comments): the records as Python's ``csv`` reader splits them, which follows pandas' C
    parser (a quote opens a quoted field only at a field's start; elsewhere it is a literal). Every block is
    then a byte range of whole records, which ``pandas.read_csv`` reads as the plan counts them. It reads the
    file line by line in Python: about 1 µs a line, so only files with odd quotes take it."""
    offsets: list[int] = []
    n_rows = 0
    with open(path, "rb") as f, long_csv_fields():
        f.seek(data_start)
        pos, last = data_start, [""]

        def lines() -> Any:
            nonlocal pos
            while pos < end:
                line = f.readline(end - pos)
                pos += len(line)
                last[0] = line.decode("utf-8")  # UTF-8 already checked by the line scan
                yield last[0]

        try:
            for record in csv.reader(lines(), delimiter=delimiter, skipinitialspace=True):
                if not record or (len(record) == 1 and not last[0].strip(" \t\r\n")):
                    continue  # an empty line or one of spaces and tabs: pandas skips it (not a line '""')
                n_rows += 1
                if n_rows % block_rows == 0 and pos < end:
                    offsets.append(pos)
        except csv.Error as e:
            raise DataError(f"CSV file {path!r}: cannot split its rows near data row {n_rows} (counted from 0): {e}; "
                            "check the quoting of that row.") from e
    return offsets, n_rows


def _check_utf8(decoder: codecs.IncrementalDecoder, chunk: bytes, path: str, rows_before: int,
                final: bool = False) -> None:
    """Decode (and drop) the next piece of a CSV's data lines, read anyway to find its line ends. The workers
    read the file as UTF-8, so one byte that is not (a file saved as Latin-1 or cp1252) fails the sweep there,
    after the cluster has started and possibly after most of the data pass; here it fails before anything
    starts. It costs the plan's scan about 15%: a 0.96 GB CSV (2·10⁶ rows × 51 columns) 0.37–0.44 s → 0.43–0.48 s,
    5 fresh processes each, alternating."""
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError as e:
        row = rows_before + e.object.count(b"\n", 0, e.start)  # e.object: the decoder's held bytes (no newline)
        #                                                          and this chunk
        raise DataError(f"CSV file {path!r} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} in row {row}, "
                        "counted from 0); save the file as UTF-8 (pandas: df.to_csv(path, index=False, "
                        "encoding='utf-8')).") from e


def _end_of_data(path: str) -> int:
    """Offset just past the last byte that is not whitespace (trailing blank lines dropped)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        end = f.tell()
        while end > 0:
            step = min(end, 1 << 16)
            f.seek(end - step)
            tail = f.read(step).rstrip(b" \t\r\n")
            if tail:
                return end - step + len(tail)
            end -= step
    return 0


def _check_array_extra(path: str, key: str, n_rows: int) -> None:
    """An array source's extra column (``data.offset`` / ``data.exposure``): a numeric 1-D ``.npy``, one value per
    row."""
    arr = _open_npy(path, key)
    _numeric_npy(arr, path, key)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise DataError(f"{key} {path!r} must be 1-D with one value per row of X ({n_rows}), got shape {arr.shape}.")


def _plan_npy(cfg: DataConfig, path: str, group: str | None, labels: bool = False) -> DataPlan:
    """X in one ``.npy`` (rows × features), the target and weights in their own; a boolean target of a binomial
    model (``labels``) has the classes False and True."""
    if cfg.target is None:
        raise DataError("data.target must name the y .npy file when data.source is an X .npy file.")
    X = _open_npy(path, "data.source")
    if X.ndim != 2:
        raise DataError(f"{path!r} must hold a 2-D array (rows × features), got shape {X.shape}.")
    _numeric_npy(X, path, "data.source")
    extras = {"data.target": cfg.target, "data.weight": cfg.weight, "folds.group": group}
    for key, p in extras.items():
        if p is None:
            continue
        arr = _open_npy(p, key)
        if key != "folds.group":
            _numeric_npy(arr, p, key)
        if arr.ndim != 1 or arr.shape[0] != X.shape[0]:
            raise DataError(f"{key} {p!r} must be 1-D with one value per row of X ({X.shape[0]}), got shape {arr.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path!r} has shape {X.shape}: it needs at least one row and one column.")
    names, kept = _array_feature_names(cfg, path, X.shape[1])
    return DataPlan(
        kind="npy", source=path, feature_names=names, target=cfg.target, weight=cfg.weight, group=group,
        n_rows=int(X.shape[0]), blocks=_row_blocks(int(X.shape[0]), cfg.block_rows, path=path),
        target_bool=labels and _open_npy(cfg.target, "data.target").dtype == np.bool_, array_columns=kept,
    )


def _plan_npz(cfg: DataConfig, path: str, group: str | None, labels: bool = False) -> DataPlan:
    """A sparse matrix written by ``scipy.sparse.save_npz`` (CSR or CSC), with the target in a ``.npy`` (a boolean
    one of a binomial model, ``labels``: the classes False and True)."""
    if cfg.target is None:
        raise DataError("data.target must name the y .npy file when data.source is a sparse X .npz file.")
    try:
        with np.load(path, allow_pickle=False) as z:
            fmt = z["format"].item() if "format" in z.files else None
            shape = tuple(int(v) for v in z["shape"]) if "shape" in z.files else None
            dtype = z["data"].dtype if "data" in z.files else None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"data.source {path!r} is not a readable .npz file: {e}") from e
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt not in ("csr", "csc") or shape is None or len(shape) != 2:
        raise DataError(f"data.source {path!r} must hold a CSR or CSC matrix written by scipy.sparse.save_npz, "
                        f"got format {fmt!r}; save it with scipy.sparse.save_npz(path, X.tocsr()).")
    if dtype is None or dtype.kind not in "biuf":
        raise DataError(f"data.source {path!r} holds {dtype} values, not real numbers.")
    n, p = shape
    for key, extra in {"data.target": cfg.target, "data.weight": cfg.weight, "folds.group": group}.items():
        if extra is None:
            continue
        arr = _open_npy(extra, key)
        if key != "folds.group":
            _numeric_npy(arr, extra, key)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise DataError(f"{key} {extra!r} must be 1-D with one value per row of X ({n}), got shape {arr.shape}.")
    if n == 0 or p == 0:
        raise DataError(f"{path!r} has shape {shape}: it needs at least one row and one column.")
    names, kept = _array_feature_names(cfg, path, p)
    return DataPlan(kind="npz", source=path, feature_names=names, target=cfg.target, weight=cfg.weight, group=group,
                    n_rows=n, blocks=_row_blocks(n, cfg.block_rows, path=path),
                    target_bool=labels and _open_npy(cfg.target, "data.target").dtype == np.bool_, array_columns=kept)


def _array_feature_names(cfg: DataConfig, path: str, p: int) -> tuple[tuple[str, ...], tuple[int, ...] | None]:
    """An array source's feature names (``data.features`` names every column of X in order; without it they are
    ``x0``, ``x1``, …) and the columns read: all of them (None), or those ``data.exclude`` does not name. An
    excluded name that is none of the columns is refused, as for a table: silently keeping a column the user
    meant to leave out fits a different model than asked for."""
    names = tuple(cfg.features) if cfg.features else tuple(f"x{j}" for j in range(p))
    if len(names) != p:
        raise DataError(f"data.features names {len(names)} columns but {path!r} has {p}: with an array source it "
                        "names every column of X, in order.")
    if not cfg.exclude:
        return names, None
    unknown = [c for c in cfg.exclude if c not in names]
    if unknown:
        raise DataError(unknown_columns("data.exclude", unknown, names, repr(path)))
    left_out = set(cfg.exclude)
    kept = tuple(j for j, name in enumerate(names) if name not in left_out)
    if not kept:
        raise DataError(f"data.exclude leaves out every column of {path!r}; keep at least one feature.")
    return tuple(names[j] for j in kept), kept


@functools.lru_cache(maxsize=2)
def _sparse_matrix(path: str, mtime: float) -> Any:
    """The whole sparse matrix of an ``.npz`` source, as CSR (kept for the blocks that follow)."""
    import scipy.sparse

    return scipy.sparse.load_npz(path).tocsr()


def _numeric_npy(arr: np.ndarray, path: str, key: str) -> None:
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{key} {path!r} holds {arr.dtype} values, not real numbers; save it as a float or integer array.")


def _open_npy(path: str, key: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as e:
        raise DataError(f"{key} {path!r} does not exist.") from e
    except (ValueError, OSError) as e:
        raise DataError(f"{key} {path!r} is not a readable .npy array: {e}") from e


def with_time_column(plan: DataPlan, time_column: str | None) -> DataPlan:
    """``plan`` also reading a retrain's time column, as one more numeric column of each block's ``X`` at
    :func:`time_column_index` (kept apart from the features by the caller)."""
    if time_column is None:
        return plan
    enc = plan.encoding
    if enc is not None:
        timed = Encoding((*enc.columns, time_column), (*enc.levels, None), (*enc.imputed, False),
                         (*enc.centers, 0.0), enc.indicators, impute=enc.impute, na_values=enc.na_values)
        return dataclasses.replace(plan, encoding=timed)
    return dataclasses.replace(plan, feature_names=(*plan.feature_names, time_column))


def time_column_index(plan: DataPlan) -> int:
    """Where :func:`with_time_column` puts the time column: after the features, before any missing indicator."""
    return len(plan.encoding.encoded_names) if plan.encoding is not None else plan.n_features


# ------------------------------------------------------------------ load
def load_block(plan: DataPlan, spec: BlockSpec, *, sparse: bool = False, sparse_levels: bool = False) -> BlockData:
    """Read one block (runs on a worker) and check it: numeric and finite.

    With ``sparse`` a sparse source's block stays a CSR matrix (the rows
    engine); with ``sparse_levels`` a table with categorical columns gives a
    CSR matrix too, its indicators stored as one level per row (the Gram
    engine's statistics pass); otherwise every block is a dense array.
    """
    if plan.needs_scan:
        raise ValueError("the plan's levels are not known yet: run the level scan (pipeline.levels) first")
    if plan.kind == "npz":
        return _load_npz_block(plan, spec, sparse)
    if plan.kind == "synthetic":
        X, y = synthetic_rows(plan.synthetic, spec.start_row, spec.n_rows)
        return BlockData(X, y, None, None, spec.start_row)
    if plan.kind == "npy":
        X, y, w, g, integer, where = _npy_block(plan, spec)
        if plan.encoding is not None:  # data.missing: impute
            import pandas as pd

            X = plan.encoding.statistics_columns(pd.DataFrame(X, columns=list(plan.raw_features)), where)
            integer = ()
        return _checked(plan, X, y, w, g, spec, where, integer, offset=_array_offset(plan, spec))
    frame = _read_frame(plan, spec)
    missing = [c for c in _needed_columns(plan) if c not in frame.columns]
    if missing:
        raise DataError(f"{spec.path}: columns {missing} are missing in this block.")
    where = f"{spec.path} rows {spec.start_row}-{spec.start_row + spec.n_rows - 1}"
    if plan.encoding is not None:
        levels_sparse = sparse_levels and plan.encoding.n_levels > 0
        X = (plan.encoding.sparse_statistics_columns if levels_sparse else plan.encoding.statistics_columns)(
            frame, where)
        integer = ()
    else:
        X = _numeric(frame, plan.feature_names, where)
        integer = tuple(bool(pd_is_integer(frame[c])) for c in plan.feature_names)
    y, labels = _target(frame, plan, where)
    w = None if plan.weight is None else _numeric(frame, (plan.weight,), where, "data.weight")[:, 0]
    g = None if plan.group is None else frame[plan.group].to_numpy()
    offset = None if plan.offset is None else _numeric(frame, (plan.offset,), where, _offset_key(plan))[:, 0]
    return _checked(plan, X, y, w, g, spec, where, integer, offset=offset, labels=labels)


def _target(frame: pd.DataFrame, plan: DataPlan, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A block's target: numbers, or a binomial model's text labels (y 0 there, NaN where a label is missing),
    stripped of surrounding blanks as categorical levels are (``'yes '`` is ``'yes'``: exports pad text)."""
    if not plan.target_labels:
        return _numeric(frame, (plan.target,), where, "data.target")[:, 0], None
    col = frame[plan.target]
    missing = col.isna().to_numpy()
    labels = col.astype(str).str.strip().to_numpy(dtype=object)
    return np.where(missing, np.nan, 0.0), labels


def raw_block_frame(plan: DataPlan, spec: BlockSpec) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None, str]:
    """One block's raw feature columns as a frame, its target and weights, and where it is (for the level scan)."""
    import pandas as pd

    if plan.kind == "npy":
        X, y, w, _, _, where = _npy_block(plan, spec)
        return pd.DataFrame(X, columns=list(plan.raw_features)), y, w, where
    where = f"{spec.path} rows {spec.start_row}-{spec.start_row + spec.n_rows - 1}"
    frame = _read_frame(plan, spec)
    y = _target(frame, plan, where)[0]
    w = None if plan.weight is None else _numeric(frame, (plan.weight,), where, "data.weight")[:, 0]
    return frame, y, w, where


def _npy_block(plan: DataPlan, spec: BlockSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                        np.ndarray | None, tuple[bool, ...], str]:
    """An ``.npy`` source's block: X (float64), y, weights, groups, integer flags per column, where it is."""
    sl = slice(spec.local_start, spec.local_start + spec.n_rows)
    raw = np.load(plan.source, mmap_mode="r", allow_pickle=False)[sl]
    if plan.array_columns is not None:
        raw = raw[:, plan.array_columns]
    y, w, g, where = _array_extras(plan, sl)
    return np.asarray(raw, dtype=np.float64), y, w, g, (raw.dtype.kind in "iub",) * raw.shape[1], where


def _array_extras(plan: DataPlan, sl: slice) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """Rows ``sl`` of the target, weight and group ``.npy`` files beside an array source, and where they are."""

    def part(path: str | None, dtype: Any = np.float64) -> np.ndarray | None:
        return None if path is None else np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[sl], dtype=dtype)

    y = part(plan.target)
    assert y is not None
    return y, part(plan.weight), part(plan.group, None), f"{plan.source} rows {sl.start}-{sl.stop - 1}"


def _load_npz_block(plan: DataPlan, spec: BlockSpec, sparse: bool) -> BlockData:
    sl = slice(spec.local_start, spec.local_start + spec.n_rows)
    matrix = _sparse_matrix(plan.source, Path(plan.source).stat().st_mtime)[sl]
    if plan.array_columns is not None:
        matrix = matrix[:, plan.array_columns]
    y, w, g, where = _array_extras(plan, sl)
    integer = (matrix.dtype.kind in "iub",) * matrix.shape[1]
    matrix = matrix.astype(np.float64)
    return _checked(plan, matrix if sparse else matrix.toarray(), y, w, g, spec, where, integer,
                    offset=_array_offset(plan, spec))


def _array_offset(plan: DataPlan, spec: BlockSpec) -> np.ndarray | None:
    """Rows of an array source's offset (or exposure) ``.npy``."""
    if plan.offset is None:
        return None
    sl = slice(spec.local_start, spec.local_start + spec.n_rows)
    return np.asarray(np.load(plan.offset, mmap_mode="r", allow_pickle=False)[sl], dtype=np.float64)


def _needed_columns(plan: DataPlan) -> list[str]:
    extras = (plan.weight, plan.group, plan.offset if plan.kind not in ("npy", "npz") else None)
    return [*plan.raw_features, plan.target, *(c for c in extras if c is not None)]


def _csv_options(plan: DataPlan) -> dict[str, Any]:
    """``pandas.read_csv`` options: categorical columns read as text (``007`` stays ``007`` in every block),
    ``data.na_values`` in place of pandas' list when given, and spaces after a comma skipped (files written
    ``a, b, c`` as UCI's adult data: ``, ?`` is then the marker ``?``, and ``, "x,y"`` one quoted field, as the
    head's kinds and the plan's row split read them)."""
    options: dict[str, Any] = {"skipinitialspace": True, "sep": plan.delimiter, "decimal": plan.decimal}
    if plan.categorical:
        options["dtype"] = {c: str for c in plan.categorical}
    if plan.na_values is not None:
        options.update(na_values=sorted(na_markers(plan.na_values)), keep_default_na=False)
    return options


def _first_bad_byte(raw: bytes, start_row: int) -> str:
    """Where a block's raw bytes first stop being UTF-8 (blocks start at a line, so no character is split)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        row = start_row + raw.count(b"\n", 0, e.start)
        return f"byte {raw[e.start:e.start + 1]!r} in row {row}, counted from 0"
    return "a byte pandas could not decode"


def _decimals_as_floats(table: Any) -> Any:
    """An Arrow table with its decimal columns cast to float64 (pandas would hold them as objects, one Python
    ``Decimal`` per value, which no numeric check takes): the nearest double to each value, as a CSV's text
    of the same number gives. Through their decimal text: Arrow's direct cast is not correctly rounded (90.82
    became 90.82000000000001 in 23 of 199 values)."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type):
            as_text = table.column(i).cast(pa.string())
            table = table.set_column(i, field.name, as_text.cast(pa.float64()))
    return table


def _read_frame(plan: DataPlan, spec: BlockSpec) -> pd.DataFrame:
    """A block's needed columns as a frame (CSV and Parquet sources)."""
    import pandas as pd

    if plan.kind == "parquet":
        import pyarrow.parquet as pq

        try:
            table = _decimals_as_floats(pq.ParquetFile(spec.path).read_row_groups(list(spec.row_groups),
                                                                                  columns=_needed_columns(plan)))
            return table.to_pandas(ignore_metadata=True)  # the columns as stored: pandas' metadata would make a
            #                                               stored index the index and names '0', '1' integers
        except (OSError, ValueError, ArithmeticError) as e:  # pyarrow's errors derive from these
            raise DataError(f"{spec.path}: cannot read row groups {list(spec.row_groups)}: {e}") from e
    if plan.kind == "bundled":
        return pd.read_csv(spec.path, skiprows=range(1, spec.local_start + 1), nrows=spec.n_rows,
                           usecols=_needed_columns(plan), **_csv_options(plan))
    a, b = spec.byte_range  # csv
    with open(spec.path, "rb") as f:
        f.seek(a)
        raw = f.read(b - a)
    rows = f"rows {spec.start_row}-{spec.start_row + spec.n_rows - 1}"
    needed = _needed_columns(plan)
    every = set(needed) == set(plan.columns)  # then pandas' reader refuses a row with too many fields itself
    if not every:
        _check_field_counts(raw, plan, spec)
    # (index_col=False: a separator ending every line is not an index column)
    read = functools.partial(pd.read_csv, header=None, names=list(plan.columns), usecols=None if every else needed,
                             index_col=False, **_csv_options(plan))
    try:
        with warnings.catch_warnings():  # a row with more fields: the field count's error, not pandas' warning too
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = read(io.BytesIO(raw))
    except pd.errors.ParserWarning:
        _check_field_counts(raw, plan, spec)  # a value too many names its row; blank ones (a line ending ',,') ...
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            frame = read(io.BytesIO(raw))  # ... are read as pandas reads them
    except UnicodeDecodeError as e:
        raise DataError(f"{spec.path}: {rows} are not UTF-8 text ({_first_bad_byte(raw, spec.start_row)}); save the "
                        "file as UTF-8 (pandas: df.to_csv(path, index=False, encoding='utf-8')).") from e
    except Exception as e:
        _check_field_counts(raw, plan, spec)  # pandas' 'Expected 3 fields in line 52' counts the block's lines
        raise DataError(f"{spec.path}: cannot parse {rows}: {e}") from e
    if len(frame) != spec.n_rows:
        raise DataError(
            f"{spec.path}: {rows} hold {len(frame)} data lines, expected {spec.n_rows}; lines of spaces only "
            "inside the data (or a quoted field spanning lines after a stray quote) are not supported, remove them."
        )
    return frame


def _check_field_counts(raw: bytes, plan: DataPlan, spec: BlockSpec) -> None:
    """A row with more fields than the header is an error, as pandas' reader makes it when it reads every column:
    reading only the needed ones (``usecols``), it drops a row's extra fields without a word, so a value holding
    the separator unquoted (``1,234``) moved the rest of its row one column on (the second probe: a model with
    R² −0.92 and no message). Separators are counted with numpy, per line where the block's total is not the
    header's times its lines (a clean 61 MB block in about 30 ms, where pandas parses it in 260–380 ms: so only
    where some columns are left out, or pandas failed); a line with too many, which quotes may explain, is
    read by the csv module."""
    sep = plan.delimiter.encode()
    if len(sep) != 1 or not raw:
        return
    a = np.frombuffer(raw, dtype=np.uint8)
    seps = a == sep[0]
    ends = np.flatnonzero(a == 10)
    if np.count_nonzero(seps) == (ends.size + (a[-1] != 10)) * (len(plan.columns) - 1):
        return  # every line as the header, the usual block (a line a field long beside one a field short: not seen)
    if ends.size == 0 or ends[-1] != a.size - 1:
        ends = np.append(ends, a.size)
    starts = np.concatenate(([0], ends[:-1] + 1))
    starts = np.minimum(starts, a.size - 1)  # (a last line that is empty)
    counts = np.add.reduceat(seps, starts, dtype=np.int64)  # separators per line (no cumulative sum of n bytes)
    expected = len(plan.columns)
    for i in np.flatnonzero(counts >= expected):
        start = int(ends[i - 1]) + 1 if i else 0
        line = raw[start:int(ends[i])].decode("utf-8", errors="replace")
        fields = next(csv.reader([line], delimiter=plan.delimiter, skipinitialspace=True), [])
        if len(fields) > expected and any(v.strip() for v in fields[expected:]):  # (not a separator ending it)
            blank = sum(1 for j in range(i) if not raw[(int(ends[j - 1]) + 1 if j else 0):int(ends[j])].strip())
            row = spec.start_row + i - blank
            raise DataError(too_many_fields(spec.path, int(row), len(fields), expected, plan.delimiter, line))


def _numeric(frame: pd.DataFrame, columns: Sequence[str], where: str, role: str | None = None) -> np.ndarray:
    """The columns as float64; a column of booleans with gaps (pandas reads ``True``/``False`` with empty
    entries as objects) is 0/1 with NaN in the gaps, as the same column without gaps would be.

    ``role`` names the config key of a column that is not a feature (``data.weight``, ``data.offset``, ...):
    text there is an error whose fix is in that column, not in the features' keys."""
    import pandas as pd

    bad = [c for c in columns if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
                                      or _booleans_with_gaps(frame[c]))]
    if bad:
        texts = {c: (pd.to_numeric(frame[c], errors="coerce").isna() & frame[c].notna()).to_numpy() for c in bad}
        examples = {c: frame[c][t].iloc[:1].tolist() for c, t in texts.items()}  # not a number (gaps are NaN)
        at = at_row(where, int(np.argmax(texts[bad[0]])))
        if role is not None:
            raise DataError(f"{where}: {role} {bad[0]!r} must hold numbers, and holds text (e.g. "
                            f"{examples[bad[0]]}{at}); name a numeric column there, or the strings that mark a gap "
                            "in data.na_values.")
        raise DataError(
            f"{where}: columns {bad} are not numeric (e.g. {examples}{at}"
            "); list them in data.categorical, name the strings that mark a gap in data.na_values, or leave them "
            "out with data.exclude."
        )
    return frame[list(columns)].to_numpy(dtype=np.float64)


def _offset_key(plan: DataPlan) -> str:
    return "data.exposure" if plan.exposure else "data.offset"


def _booleans_with_gaps(column: pd.Series) -> bool:
    import pandas as pd

    return column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) == "boolean"


def check_head(plan: DataPlan, n: int | None = None) -> int:
    """Read the first ``n`` rows of a CSV source (by default :func:`~pipeline.column_kinds.head_rows`) and check
    the types of the columns the plan uses; returns how many rows were read (0 for sources whose types the plan
    already checked)."""
    if plan.kind != "csv":
        return 0  # Parquet and .npy types are in their metadata (checked by plan_data); synthetic is numeric
    n = head_rows(len(plan.columns)) if n is None else n
    frame = _head_frame(plan, n)
    assert frame is not None  # (None only for a Parquet file without rows)
    used = [c for c in _needed_columns(plan) if c != plan.group and c not in plan.categorical
            and not (plan.target_labels and c == plan.target)]
    _numeric(frame, used, f"{plan.source} (first {len(frame)} rows)")
    return len(frame)


def pd_is_integer(column: object) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column))


def _checked(plan: DataPlan, X: Any, y: np.ndarray, w: np.ndarray | None, g: np.ndarray | None, spec: BlockSpec,
             where: str, integer: tuple[bool, ...] = (), *, offset: np.ndarray | None = None,
             labels: np.ndarray | None = None) -> BlockData:
    """Check one block (a dense array, or CSR whose non-finite stored values mark their rows): finite
    features/target/weights (or drop those rows) and weights >= 0; an offset finite (an exposure positive:
    its log is returned as the offset). Unless ``data.missing`` is ``error``, a row with a NaN or inf offset is
    left out (never imputed), counted by the first of target, weight, feature, offset it was missing."""
    bad_offset = np.zeros(y.shape, dtype=bool)
    if offset is not None:
        offset, bad_offset = _checked_offset(plan, offset, spec, where)
    kept = None
    sparse = hasattr(X, "indptr")
    bad_target = ~np.isfinite(y)
    bad_weight = ~np.isfinite(w) if w is not None else np.zeros(y.shape, dtype=bool)
    bad_feature = np.zeros(y.shape, dtype=bool)
    if sparse:
        bad_feature[_stored_nonfinite(X)[0]] = True
    elif not _column_sums_finite(X):
        bad_feature = ~np.isfinite(X).all(axis=1)
    bad = bad_target | bad_weight | bad_feature | bad_offset
    dropped_by = (0, 0, 0, 0)
    if bad.any():
        if plan.missing == "error":
            detail = (_sparse_gap_detail(plan, X, bad, spec.start_row) if sparse and plan.encoding is None else
                      _nonfinite_detail(plan, X.toarray() if sparse else X, y, w, spec.start_row))
            raise DataError(f"{where}: {detail}; {_gap_fix(bool(bad_feature.any()), imputable=not plan.sparse)}.")
        kept = ~bad
        dropped_by = (int(bad_target.sum()), int((bad_weight & ~bad_target).sum()),
                      int((bad_feature & ~bad_target & ~bad_weight).sum()),
                      int((bad_offset & ~bad_feature & ~bad_target & ~bad_weight).sum()))
        X, y = X[kept], y[kept]
        w = None if w is None else w[kept]
        g = None if g is None else g[kept]
        offset = None if offset is None else offset[kept]
        labels = None if labels is None else labels[kept]
    _check_weights(plan, w, spec.start_row, where)
    return BlockData(X if sparse else np.ascontiguousarray(X), y, w, g, spec.start_row, integer, kept, dropped_by,
                     offset, labels)


def _check_weights(plan: DataPlan, w: np.ndarray | None, start_row: int, where: str) -> None:
    """Weights are >= 0 (a row of weight 0 counts for nothing); a negative one is a one-line error naming how
    many, the first and its row."""
    if w is None:
        return
    negative = np.isfinite(w) & (w < 0)  # (-inf: a gap, left out or refused as one)
    if not negative.any():
        return
    bad = np.flatnonzero(negative)
    many = f"{bad.size} negative value{'s' if bad.size > 1 else ''}"
    raise DataError(f"{where}: weight column {plan.weight!r} has {many}, "
                    f"first {float(w[bad[0]])!r} at row {int(bad[0]) + start_row} (rows counted from 0, header "
                    "excluded); weights must be >= 0: fix or remove those rows.")


def _column_sums_finite(X: np.ndarray) -> bool:
    """Whether every column sum is finite: then no entry is NaN or inf. One cheap pass tells a clean block (the
    usual case; 2.7 ms for 65,536 × 100 against 7 ms for the row-wise test); an overflowing sum of finite values
    says no, and the row-wise test then decides."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(X.sum(axis=0)).all())


def _checked_offset(plan: DataPlan, offset: np.ndarray, spec: BlockSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A block's offset, finite (an exposure also positive, and its log returned), and the rows it leaves out:
    unless ``data.missing`` is ``error``, a missing (NaN or inf) offset leaves its row out, as a missing target
    does. Anything else is a one-line error."""
    missing = ~np.isfinite(offset) if plan.missing != "error" else np.zeros(offset.shape, dtype=bool)
    offset = np.where(missing, 1.0, offset)
    key = "data.exposure" if plan.exposure else "data.offset"
    bad = ~np.isfinite(offset) | ((offset <= 0) if plan.exposure else False)
    if bad.any():
        rows = np.flatnonzero(bad)
        what = (f"value{'s' if rows.size > 1 else ''} <= 0 or NaN/inf (its log is the offset)" if plan.exposure
                else "NaN or inf")
        fix = ("fix those rows, or set data.missing: drop to leave rows with a missing value out"
               if not np.all(np.isfinite(offset)) else "an exposure must be positive: fix or remove those rows")
        raise DataError(f"{where}: {key} {plan.offset!r} has {rows.size} {what}, first {float(offset[rows[0]])!r} at "
                        f"row {int(rows[0]) + spec.start_row}; {fix}.")
    return (np.log(offset) if plan.exposure else offset), missing


def _sparse_gap_detail(plan: DataPlan, X: Any, bad: np.ndarray, start_row: int) -> str:
    """``NaN or inf in rows 7 (rows counted from 0), column(s) ['x5']``: a sparse block's gaps, named from its
    stored values without making the block dense."""
    columns = sorted({plan.feature_names[c] for c in _stored_nonfinite(X)[1][:100].tolist()})
    return (f"NaN or inf in rows {_rows_shown(np.flatnonzero(bad) + start_row)} (rows counted from 0)"
            + (f", column(s) {columns[:5]}" if columns else ""))


def _stored_nonfinite(matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (row, column) of every NaN or inf a CSR matrix stores, without making it dense."""
    bad = ~np.isfinite(np.asarray(matrix.data, dtype=np.float64))
    return np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))[bad], np.asarray(matrix.indices)[bad]


def _rows_shown(rows: np.ndarray, listed: int = 5) -> str:
    """``3, 9 and 4 more``: the first ``listed`` of ``rows``."""
    more = f" and {rows.size - listed} more" if rows.size > listed else ""
    return ", ".join(str(int(r)) for r in rows[:listed]) + more


def _nonfinite_detail(plan: DataPlan, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, start_row: int,
                      listed: int = 5) -> str:
    """Which columns hold NaN/inf and at which rows (0-based data rows, header not counted)."""
    features = plan.encoding.statistics_sources if plan.encoding is not None else plan.feature_names
    names = (*features, plan.target, *(c for c in (plan.weight,) if c))
    cols = [X, y[:, None]] + ([w[:, None]] if w is not None else [])
    full = np.hstack(cols)
    bad_columns = np.flatnonzero(~np.isfinite(full).all(axis=0))
    first_of_each = [j for i, j in enumerate(bad_columns) if i == 0 or names[j] != names[bad_columns[i - 1]]]
    # a categorical column's indicators: named once, by the column
    return _gap_detail([(names[j], np.flatnonzero(~np.isfinite(full[:, j])) + start_row) for j in first_of_each],
                       listed, header=plan.kind not in ("npy", "npz"))


def _gap_detail(gaps: Sequence[tuple[str, np.ndarray]], listed: int = 5, header: bool = True) -> str:
    """``NaN or inf in column 'a' at rows 3, 9; …``: the first ``listed`` columns ``(name, data rows)`` given
    (a table's rows counted without its header; an array has none to mention)."""
    parts = []
    for name, rows in gaps[:listed]:
        parts.append(f"column {name!r} at row{'s' if rows.size > 1 else ''} {_rows_shown(rows, listed)}")
    return "NaN or inf in " + "; ".join(parts) + f" (rows counted from 0{', header excluded' if header else ''})"


def _gap_fix(features: bool, imputable: bool = True) -> str:
    """What to do about gaps under ``data.missing: error`` (``features``: some are in features; ``imputable``:
    not a sparse source, which cannot be imputed)."""
    if features and not imputable:
        return "remove those rows or set data.missing: drop to leave them out (a sparse source cannot be imputed)"
    if not features:
        return ("remove those rows or set data.missing: drop to leave them out (a missing target or weight is never "
                "imputed)")
    return ("remove those rows, set data.missing: drop to leave them out, or data.missing: impute to fill the "
            "features' gaps (rows missing the target or weight are left out)")


def read_example(plan: DataPlan, integer_columns: Sequence[bool] = (), n: int = 5) -> pd.DataFrame:
    """The first ``n`` rows of the features, typed as the whole source stores them.

    ``integer_columns`` (per feature, from the data pass) says which columns
    are integers in *every* block; all others are float64. A CSV column whose
    first rows happen to be whole numbers is still float if any block has a
    fraction. The offset (or exposure) column follows the features, named as the model reads it
    (:attr:`DataPlan.offset_column`).
    """
    import pandas as pd

    offset = plan.offset_column

    if plan.encoding is not None:  # the raw columns, as the model takes them (text as text, gaps as gaps)
        if plan.kind == "npy":
            raw = np.load(plan.source, mmap_mode="r", allow_pickle=False)[:n]
            if plan.array_columns is not None:
                raw = raw[:, plan.array_columns]
            frame = pd.DataFrame(np.asarray(raw, dtype=np.float64), columns=list(plan.raw_features))
            if offset is not None and plan.offset is not None:
                frame[offset] = np.asarray(np.load(plan.offset, mmap_mode="r", allow_pickle=False)[: len(frame)])
                frame = frame[np.isfinite(frame[offset])].reset_index(drop=True)  # a row without it is not fitted
            return frame
        spec = plan.blocks[0]
        if plan.kind == "bundled":
            spec = dataclasses.replace(spec, n_rows=min(n, spec.n_rows))
        tabular = offset if plan.kind not in ("npy", "npz") else None
        read = _read_frame(plan, spec)
        fitted = read[plan.target].notna()  # a row without its target (or weight) is not fitted: its level may
        if plan.weight is not None:         # be one the model never saw, which would warn at logging
            fitted &= np.isfinite(pd.to_numeric(read[plan.weight], errors="coerce"))
        frame = read.loc[fitted, [*plan.raw_features, *((tabular,) if tabular else ())]]
        if plan.missing != "impute":  # rows with gaps are not fitted, and the model cannot fill them in
            frame = frame.dropna()
        elif tabular:  # nor are rows without their offset, which is never imputed
            frame = frame.dropna(subset=[tabular])
        return frame.head(n).reset_index(drop=True)
    for spec in plan.blocks:  # under data.missing: drop a whole block may be left out: take the next
        if plan.kind in ("synthetic", "npy", "npz", "bundled") and plan.missing == "error":  # row-addressable
            spec = dataclasses.replace(spec, n_rows=min(n, spec.n_rows))
        block = load_block(plan, spec)
        X = block.X[:n]
        if X.shape[0]:
            break
    frame = pd.DataFrame(X, columns=list(plan.feature_names))
    for name, is_int in zip(plan.feature_names, integer_columns):
        if is_int:
            frame[name] = frame[name].astype(np.int64)
    if offset is not None and block.offset is not None:
        values = block.offset[: X.shape[0]]
        frame[offset] = np.exp(values) if plan.exposure else values
    return frame


def example_parquet(plan: DataPlan, integer_columns: Sequence[bool] = (), n: int = 5) -> bytes:
    """:func:`read_example` as Parquet bytes, as the model's logging takes them; empty for a model too wide to
    be logged with an example (:data:`~pipeline.model.SIGNATURE_MAX_COLUMNS`)."""
    if plan.n_features > SIGNATURE_MAX_COLUMNS:
        return b""
    buf = io.BytesIO()
    read_example(plan, integer_columns, n).to_parquet(buf, index=False)
    return buf.getvalue()


# -------------------------------------------------------------- synthetic
def synthetic_coef(n_features: int, n_informative: int, seed: int) -> np.ndarray:
    """The true β of synthetic data: ``n_informative`` leading entries of magnitude 0.5–2, random signs."""
    rng = np.random.default_rng([seed, 2**31 - 1])
    beta = np.zeros(n_features)
    beta[:n_informative] = rng.uniform(0.5, 2.0, n_informative) * rng.choice([-1.0, 1.0], n_informative)
    return beta


def synthetic_rows(params: tuple[int, int, int, float, float, int] | None, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start … start + n − 1`` of the synthetic data set.

    Columns are equicorrelated: ``x_j = sqrt(ρ) z₀ + sqrt(1 − ρ) z_j`` with
    standard normal z, so ``corr(x_i, x_j) = ρ``; ``y = Xβ + σ ε``.
    """
    assert params is not None
    _, p, k, rho, noise, seed = params
    beta = synthetic_coef(p, k, seed)
    first, last = start // SYNTH_CHUNK, (start + n - 1) // SYNTH_CHUNK
    X = np.empty((n, p))
    y = np.empty(n)
    for c in range(first, last + 1):
        rng = np.random.default_rng([seed, c])
        z = rng.standard_normal((SYNTH_CHUNK, p + 2))
        Xc = math.sqrt(rho) * z[:, :1] + math.sqrt(1.0 - rho) * z[:, 1 : p + 1]
        yc = Xc @ beta + noise * z[:, p + 1]
        lo = max(start, c * SYNTH_CHUNK)
        hi = min(start + n, (c + 1) * SYNTH_CHUNK)
        X[lo - start : hi - start] = Xc[lo - c * SYNTH_CHUNK : hi - c * SYNTH_CHUNK]
        y[lo - start : hi - start] = yc[lo - c * SYNTH_CHUNK : hi - c * SYNTH_CHUNK]
    return X, y


def _check_time_values(plan: DataPlan, tc: str) -> None:
    """The time column's type from the Parquet schema, or its first rows of a CSV: numbers, or an error naming
    the fix. A column of dates left out with data.exclude (as the features' date error advises) passed the sweep
    and failed the first retrain after the cluster started, advising data.categorical (the retrain probe)."""
    said = None
    if plan.kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        kind = pq.ParquetFile(plan.blocks[0].path).schema_arrow.field(tc).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            said = f"values of type {kind}"
    elif plan.kind == "csv":  # the csv module, as the plan's other head checks (no pandas before the cluster)
        missing, values = csv_head_values(plan.blocks[0].path, list(plan.columns), [tc], HEAD_ROWS,
                                          na_markers(plan.na_values), plan.delimiter, plan.decimal, numbers=[tc])[tc]
        text = np.flatnonzero(~missing & np.isnan(values))
        if text.size:
            said = f"text or dates (first at row {int(text[0])}, counted from 0, header excluded)"
    if said is not None:
        raise RetrainInputError(f"retrain.holdout.time_column {tc!r} holds {said}; it must hold numbers that grow "
                                "with time: add a column of them (e.g. days since a date: pandas "
                                f"(pd.to_datetime(df[{tc!r}]) - pd.Timestamp('2000-01-01')).dt.days) and name it "
                                "there.")


def without_time_column(plan: DataPlan, data: DataConfig, tc: str | None) -> DataPlan:
    """The plan with ``retrain.holdout.time_column`` ``tc`` checked and kept out of the features: a retrain
    holds out its newest rows by it and reads it apart, so the sweep leaves it out as well (a model swept with
    it as a feature could never be retrained: "the data lack ['year']")."""
    if tc is None:
        return plan
    if plan.kind not in ("csv", "parquet", "bundled"):
        raise RetrainInputError(
            f"retrain.holdout.time_column {tc!r} needs a tabular source (CSV or Parquet), but data.source "
            f"is {plan.kind}; unset it to hold out a seeded fraction of rows."
        )
    if tc not in plan.columns:
        raise RetrainInputError(unknown_columns("retrain.holdout.time_column", [tc], list(plan.columns), plan.source))
    if tc in (plan.target, plan.weight):
        raise RetrainInputError(f"retrain.holdout.time_column {tc!r} is the target or weight column.")
    if data.features is not None and tc in data.features:
        raise RetrainInputError(f"retrain.holdout.time_column {tc!r} must not be in data.features.")
    if tc in plan.categorical:
        raise RetrainInputError(f"retrain.holdout.time_column {tc!r} holds text; it must hold numbers (e.g. days "
                                "since a date).")
    _check_time_values(plan, tc)
    if tc in plan.feature_names:
        note = (f"retrain.holdout.time_column {tc!r} is left out of the features: a retrain holds out its newest "
                "rows by it.")
        # the notes about it as a feature (an identifier's "leave it out with data.exclude") no longer apply
        kept = tuple(n for n in plan.notes if not n.startswith(f"column {tc!r} "))
        plan = dataclasses.replace(plan, feature_names=tuple(f for f in plan.feature_names if f != tc),
                                   notes=(*kept, note))
    if not plan.feature_names:
        raise RetrainInputError("no feature columns are left besides the time column.")
    return plan
