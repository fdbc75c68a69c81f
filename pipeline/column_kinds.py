"""What kind each column holds, decided on the driver from metadata or a CSV's first lines.

Kinds: ``numeric``, ``bool``, ``text``, ``date`` (and ``other`` for Arrow
types regsweep cannot use). Under ``data.categorical: auto`` text and boolean
columns, and Parquet columns whose stored Arrow type is ``dictionary<…>``,
are categorical; a list adds integer-coded columns. Dates and times are
refused with the fix. CSV heads are read with the standard library (the
driver does not import pandas: it costs 0.3 s on every sweep).

A column whose kind a CSV's first lines misjudge (numbers first, text later)
is caught when its block is read, with the file rows named.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["HEAD_ROWS", "PANDAS_NA_VALUES", "arrow_kind", "categorical_columns", "check_free_text", "csv_head_kinds",
           "free_text_candidates", "stored_arrow_schema"]

HEAD_ROWS = 1000
PANDAS_NA_VALUES = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})  # pandas.read_csv's default na_values (pandas 2–3)
_BOOL = frozenset({"True", "False", "TRUE", "FALSE", "true", "false"})
_DATE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}([ T]\d{1,2}:\d{2}(:\d{2})?)?"
    r"|\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)\s*$")


def csv_head_kinds(path: str, columns: Sequence[str], na_values: Sequence[str] | None,
                   n_rows: int = HEAD_ROWS) -> tuple[dict[str, str], dict[str, bool]]:
    """Kind of every column from a CSV's first ``n_rows`` data lines, and whether its values there are unique."""
    na = PANDAS_NA_VALUES if na_values is None else frozenset(na_values)
    values: dict[str, list[str]] = {c: [] for c in columns}
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        next(reader, None)
        for i, row in enumerate(reader):
            if i >= n_rows:
                break
            for c, v in zip(columns, row):
                if v.strip() not in na:
                    values[c].append(v.strip())
    kinds = {c: _kind(vs) for c, vs in values.items()}
    unique = {c: len(set(vs)) == len(vs) and len(vs) > 0 for c, vs in values.items()}
    return kinds, unique


def check_free_text(column: str, n_levels: int, present: int) -> None:
    """The rule for a text column made categorical by ``auto``: more distinct values than half its present
    values (and more than two) is free text (names, comments, identifiers), refused with the fix."""
    if present and n_levels > present / 2 and n_levels > 2:
        raise DataError(f"column {column!r} looks like free text: {n_levels} distinct values in {present} rows; "
                        f"leave it out with data.exclude: [{column}], or list it in data.categorical to keep its "
                        "values as levels.")


def _kind(values: Sequence[str]) -> str:
    if all(_is_number(v) for v in values):
        return "numeric"  # also an all-missing head: blocks further on decide
    if all(v in _BOOL for v in values):
        return "bool"
    if all(_DATE.match(v) for v in values):
        return "date"
    return "text"


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def arrow_kind(typ: pa.DataType) -> str:
    """The kind of a stored Arrow type (a dictionary-encoded *physical* column has its logical type here)."""
    import pyarrow as pa

    if pa.types.is_dictionary(typ):
        return "dictionary"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return "numeric"
    if pa.types.is_boolean(typ):
        return "bool"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    if pa.types.is_temporal(typ):
        return "date"
    return "other"


def stored_arrow_schema(metadata: Any) -> pa.Schema | None:
    """The Arrow schema a writer stored in a Parquet footer (``ARROW:schema``), which keeps ``dictionary<…>``
    types (a pandas ``category``); ``ParquetFile.schema_arrow`` reports their value type instead."""
    import base64

    import pyarrow as pa

    raw = (metadata.metadata or {}).get(b"ARROW:schema")
    if raw is None:
        return None
    try:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(raw)))
    except (ValueError, OSError, ArithmeticError):  # pyarrow's errors derive from these
        return None


def categorical_columns(kinds: Mapping[str, str], features: Sequence[str], target: str, weight: str | None,
                        listed: Sequence[str] | str, where: str, labels: bool = False) -> tuple[str, ...]:
    """The categorical features; a text, date or other-typed target, weight or feature is a one-line error (a
    text, boolean or dictionary target is allowed with ``labels``: a binomial model's classes)."""
    if labels and kinds.get(target, "numeric") in ("text", "bool", "dictionary"):
        target = ""
    fixes = {"data.target": "a categorical target needs model.family: binomial (two classes); otherwise choose a "
                            "numeric column.",
             "data.weight": "a sample weight is a number per row; choose a numeric column."}
    for key, col in (("data.target", target), ("data.weight", weight)):
        if col and kinds.get(col, "numeric") != "numeric":
            raise DataError(f"{key} {col!r} of {where} holds {_said(kinds[col])}, not numbers: {fixes[key]}")
    if not isinstance(listed, str):
        unknown = [c for c in listed if c not in features]
        if unknown:
            raise DataError(f"data.categorical {unknown} are not feature columns of {where}; features are "
                            f"{list(features)}.")
    out = []
    for c in features:
        kind = kinds.get(c, "numeric")
        if kind == "date":
            raise DataError(f"column {c!r} of {where} holds dates or times; convert them to numbers (e.g. days "
                            "since a date) or leave the column out with data.exclude.")
        if kind == "other":
            raise DataError(f"column {c!r} of {where} has a type regsweep cannot use; convert it to numbers or text, "
                            "or leave it out with data.exclude.")
        if kind in ("text", "bool", "dictionary") or (not isinstance(listed, str) and c in listed):
            out.append(c)
    return tuple(out)


def free_text_candidates(categorical: Sequence[str], kinds: Mapping[str, str],
                         listed: Sequence[str] | str) -> tuple[str, ...]:
    """The text columns made categorical by ``auto``, which the level scan refuses as free text when nearly every
    value is distinct (a column the user listed is kept whatever its level count)."""
    return tuple(c for c in categorical if kinds[c] == "text" and (isinstance(listed, str) or c not in listed))


def _said(kind: str) -> str:
    return {"text": "text", "bool": "true/false values", "date": "dates", "dictionary": "categories"}.get(kind, kind)
