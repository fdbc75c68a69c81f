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

import contextlib
import csv
import dataclasses
import difflib
import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DECIMAL_COMMA", "HEAD_ROWS", "PANDAS_NA_VALUES", "Disguise", "HeadScan", "arrow_kind",
           "categorical_columns", "csv_head_kinds", "csv_head_values", "free_text_candidates", "head_rows",
           "is_free_text", "is_number", "kind_of_strings", "long_csv_fields", "looks_like_a_counter", "na_markers",
           "numbers_in_disguise", "refuse_free_text", "stored_arrow_schema", "too_many_fields", "unknown_columns",
           "yaml_list", "zero_padded_code"]

HEAD_ROWS = 1000
_HEAD_KIND_FIELDS = 2_000_000  # fields a CSV's head is read for at most: 1,000 rows up to 2,000 columns, then fewer


def head_rows(n_columns: int) -> int:
    """Rows of a CSV's head read to tell its columns' kinds (and check their types): :data:`HEAD_ROWS`, but at
    least 100 and no more than :data:`_HEAD_KIND_FIELDS` fields in all. A 500-row table of 20,000 columns took
    16 s in check-config on its 10⁷ fields (pandas reads the whole file in 1.4 s); the data pass still
    checks every row on the workers."""
    return min(HEAD_ROWS, max(100, _HEAD_KIND_FIELDS // max(n_columns, 1)))


PANDAS_NA_VALUES = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})  # pandas.read_csv's default na_values (pandas 2–3)
_LOOK_FURTHER = 100_000  # data lines read at most for a column whose head is all gaps ...
_LOOK_FURTHER_FIELDS = 10_000_000  # ... and fields (a wide file's lines are long)
_MARKER = re.compile(r"^[?\-.*_/#~!]+$")  # punctuation only: '?', '-', '.', '--', '*', '#N/A'-like
_MARKER_WORDS = frozenset({"missing", "unknown", "na", "n.a.", "n/a", "n.a", "none", "nil", "null", "undefined",
                           "not available", "not applicable", "#value!", "#div/0!", "#ref!", "#num!", "#name?",
                           "nan", "n.d.", "nd"})  # 'NAN', 'Nan': float() reads them, pandas does not
_CURRENCY = (r"(?:[$€£¥₹₩₽¢]|R\$|kr\.?|Fr\.|(?:USD|EUR|GBP|JPY|CHF|CAD|AUD|NZD|CNY|HKD|SGD|INR|SEK|NOK|DKK|PLN|CZK"
             r"|HUF|BRL|MXN|ZAR|RUB|KRW|TRY)\b)")  # signs and ISO codes, before or after the number
_GROUPED = r"\d{1,3}(?P<sep>[_,. \u00a0\u202f'’])\d{3}(?:(?P=sep)\d{3})*(?:[.,]\d+)?"  # 1,234 1.234,5 1 234 1'234
_FORMATTED = re.compile(  # '(1,234)', '$1,200', '-12.5%', '3,14', '1.570,50', '101,00 €', 'USD 12', '(0.20)', '−0.5'
    rf"^\(?\s*[-+−]?\s*(?:{_CURRENCY}\s*)?[-+−]?\s*(?:{_GROUPED}|\d+(?:[.,]\d+)?|[.,]\d+)\s*(?:%|{_CURRENCY})?\s*\)?$")
_CENSORED = re.compile(r"^(?:[<>≤≥]=?|&[lg]t;)\s*[-+]?\d+(?:[.,]\d+)?$")  # '<5' (suppressed counts), '>79' (top-coded)
# newline-joined plain numbers; each number has one parse (digits, then an optional fraction), so a failing
# match backtracks over nothing (an ambiguous [0-9]+\.?[0-9]* took minutes on a column of integers, then a word)
_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_PLAIN_NUMBERS = re.compile(rf"{_NUMBER}(?:\n{_NUMBER})*")
_INTEGER = re.compile(r"^[-+]?\d{1,18}$")
DECIMAL_COMMA = re.compile(r"^[-+]?\d*,\d+([eE][-+]?\d+)?$")  # '3,14', '-0,5', ',5': a number with a decimal comma
_LEVEL_LIKE_GAPS = frozenset({"None", "NA", "N/A", "n/a"})  # pandas' gap markers that are levels in many tables
_BOOL = frozenset({"True", "False", "TRUE", "FALSE", "true", "false"})
_MONTH = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"  # 'Jan', 'January', 'Sept.'
_DATE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}([ T]\d{1,2}:\d{2}(:\d{2})?)?"
    r"|\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?"
    rf"|\d{{1,2}}[-/. ]{_MONTH}[-/. ,]+\d{{2,4}}|{_MONTH}[-/. ]\d{{1,2}}(st|nd|rd|th)?,?[-/. ]+\d{{2,4}}"  # 05-Jan-2021
    rf"|\d{{4}}[-/. ]{_MONTH}[-/. ]\d{{1,2}}|{_MONTH}[-/. ]+\d{{4}})\s*$")  # 2021-Jan-05, Jan 2021


@dataclass(frozen=True)
class Disguise:
    """What makes a column of numbers read as text (:func:`numbers_in_disguise`): gap ``markers`` among the
    numbers, or (no markers) numbers ``formatted`` as text."""

    markers: tuple[str, ...]  # the strings besides the numbers, as pandas reads them
    count: int  # values that are not numbers
    of: int  # values looked at
    example: str  # the first value that is not a number
    stray: bool = False  # markers that are not gap words: a few stray values among many numbers
    censored: bool = False  # a marker is a bound ('<5', '>79'): a value suppressed or top-coded, not absent

    def __str__(self) -> str:
        if self.markers:
            return f"numbers and {', '.join(map(repr, self.markers))} ({self.count} of its first {self.of} values)"
        return f"numbers written as text (e.g. {self.example!r})"


@dataclass(frozen=True)
class HeadScan:
    """What a CSV's first lines say of each column (:func:`csv_head_kinds`)."""

    kinds: dict[str, str]
    unique: dict[str, bool]  # its values there are distinct
    disguised: dict[str, Disguise]  # a text column of numbers in disguise: what disguises them
    counters: dict[str, bool]  # distinct close whole numbers: an identifier (looks_like_a_counter)
    empty: tuple[str, ...]  # columns without a single value in the whole file (known only for files read to the end)
    codes: dict[str, str] = dataclasses.field(default_factory=dict)  # numbers with leading zeros: an example each
    nones: dict[str, int] = dataclasses.field(default_factory=dict)  # a text column's 'None' read as a gap: how often
    none_words: dict[str, str] = dataclasses.field(default_factory=dict)  # ... and the first such word ('None', 'NA')


def csv_head_kinds(path: str, columns: Sequence[str], na_values: Sequence[str] | None,
                   n_rows: int | None = None, delimiter: str = ",", decimal: str = ".") -> HeadScan:
    """A CSV's columns as its first ``n_rows`` data lines show them (by default :func:`head_rows`).

    A column with no value in those lines (a gap in all of them) is read further, up to :data:`_LOOK_FURTHER`
    lines (and :data:`_LOOK_FURTHER_FIELDS` fields), until it shows one: its kind is otherwise a guess
    (numeric), which a text column refutes only when a worker reads its block."""
    n_rows = head_rows(len(columns)) if n_rows is None else n_rows
    na = na_markers(na_values)
    nones: dict[str, int] = {}
    words: dict[str, str] = {}
    further = min(_LOOK_FURTHER, max(n_rows, _LOOK_FURTHER_FIELDS // max(len(columns), 1)))
    ended = True
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f, long_csv_fields():
        reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
        next(reader, None)
        lines = enumerate(reader)
        head: list[list[str]] = []
        for _, row in itertools.islice(lines, n_rows):
            if not row or len(row) == 1 and not row[0].strip(" \t"):
                continue  # an empty line, or one of spaces and tabs, which pandas skips (or '""': gaps anyway)
            if len(row) > len(columns) and any(v.strip() for v in row[len(columns):]):
                raise DataError(too_many_fields(path, len(head), len(row), len(columns), delimiter,
                                                delimiter.join(row)))
            head.append(row)
        values = _present_values(head, columns, na, decimal, nones, words)
        wanted = [(j, c) for j, c in enumerate(columns) if not values[c]]
        for i, row in lines:  # past the head: only the columns still without a value
            if not row or len(row) == 1 and not row[0].strip(" \t"):
                continue
            wanted = [(j, c) for j, c in wanted if not values[c]]
            if not wanted or i >= further:
                ended = not wanted
                break
            for c, v in ((c, row[j]) for j, c in wanted if j < len(row)):
                _count_gap_word(c, v, na, nones, words)
                if v not in na:
                    values[c].append(v.replace(",", ".") if decimal == "," and DECIMAL_COMMA.match(v) else v)
    kinds = {c: kind_of_strings(vs) for c, vs in values.items()}
    unique = {c: len(set(vs)) == len(vs) and len(vs) > 0 for c, vs in values.items()}
    return HeadScan(kinds, unique,
                    {c: why for c, vs in values.items() if kinds[c] == "text" and (why := numbers_in_disguise(vs))},
                    {c: kinds[c] == "numeric" and unique[c] and looks_like_a_counter(vs) for c, vs in values.items()},
                    tuple(c for c, vs in values.items() if not vs) if ended else (),
                    {c: code for c, vs in values.items() if kinds[c] == "numeric" and (code := zero_padded_code(vs))},
                    {c: k for c, k in nones.items() if kinds[c] == "text"},
                    {c: w for c, w in words.items() if kinds[c] == "text"})


def _present_values(head: list[list[str]], columns: Sequence[str], na: frozenset[str], decimal: str,
                    nones: dict[str, int], words: dict[str, str]) -> dict[str, list[str]]:
    """Each column's values in the ``head`` rows that are not gap markers (``na``; a short row's missing fields
    are gaps too), a decimal comma read as a point; the level-like gap words counted in ``nones`` / ``words``.
    Column by column on the transposed rows, so that a wide table's head (500 rows × 20,000 columns: 10⁷ fields)
    costs set and list operations in C, not a Python step per field."""
    width = len(columns)
    padded = [row if len(row) >= width else [*row, *[None] * (width - len(row))] for row in head]
    transposed = zip(*padded) if padded else iter([()] * width)
    values: dict[str, list[str]] = {}
    for c, col in zip(columns, transposed):
        present = set(col)
        gaps = present & na
        for word in sorted(gaps & _LEVEL_LIKE_GAPS, key=col.index):
            nones[c] = nones.get(c, 0) + col.count(word)
            words.setdefault(c, word)
        vs = [v for v in col if v is not None and v not in na] if gaps or None in present else list(col)
        values[c] = [v.replace(",", ".") if DECIMAL_COMMA.match(v) else v for v in vs] if decimal == "," else vs
    return values


def _count_gap_word(c: str, v: str, na: frozenset[str], nones: dict[str, int], words: dict[str, str]) -> None:
    """A level-like gap marker (``None``, ``NA``) read as a gap in column ``c``: counted, the first one kept."""
    if v in _LEVEL_LIKE_GAPS and v in na:
        nones[c] = nones.get(c, 0) + 1
        words.setdefault(c, v)


def too_many_fields(path: str, row: int, fields: int, expected: int, delimiter: str, line: str) -> str:
    """The message for a CSV row with more fields than its header (pandas' reader refuses it too; empty ones, a
    separator ending the line, are read as nothing). A first row of names only, wider than the header, is the
    real header below a title line, as statistics portals put above a table."""
    if row < 5 and not any(is_number(v.strip()) for v in line.split(delimiter) if v.strip()):
        return (f"{path}: the first line has {expected} field{'s' if expected > 1 else ''} and row {row} below it "
                f"{fields}, all names: is the first line a title above the table? delete the lines above the "
                f"header, so that the header is the first line (row {row}: {line.strip()[:80]!r}).")
    return (f"{path}: row {row} (counted from 0, header excluded) has {fields} fields, the header {expected}: a "
            f"value holds the separator {delimiter!r} unquoted (as in '1{delimiter}234'?); quote it or remove the "
            f"separator: {line.strip()[:80]!r}.")


def csv_head_values(path: str, columns: Sequence[str], wanted: Sequence[str], n_rows: int, na: frozenset[str],
                    delimiter: str = ",", decimal: str = ".", numbers: Sequence[str] = ()
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The ``wanted`` columns of a CSV's first ``n_rows`` data rows as pandas splits them (blank lines skipped,
    spaces after a separator too; a short row's missing fields are gaps): each as (missing: an NA marker in
    ``na`` or no field, its values as float64: parsed for the ``numbers`` columns, elsewhere ±inf or NaN).
    The csv module only: a check before the cluster starts must not import pandas."""
    position = {c: j for j, c in reversed(list(enumerate(columns)))}  # (a name twice: its first, as .index)
    index = {c: position[c] for c in wanted}  # (columns.index per name: 20,000 columns took 1.7 s)
    raw: dict[str, list[str | None]] = {c: [] for c in wanted}
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f, long_csv_fields():
        reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
        next(reader, None)
        rows = 0
        for row in reader:
            if rows >= n_rows:
                break
            if not row:
                continue  # an empty line, which pandas skips
            if len(row) == 1 and not row[0].strip(" \t"):
                break  # spaces and tabs (skipped) or '""' (a row of gaps): told apart by pandas only; the rows so far
            rows += 1
            for c, j in index.items():
                raw[c].append(row[j] if j < len(row) else None)
    out = {}
    for c, vs in raw.items():
        missing = np.array([v is None or v in na for v in vs], dtype=bool)
        if c in numbers:
            values = [_as_float(v, decimal) if v is not None and v not in na else np.nan for v in vs]
        else:  # only ±inf matters here: found by its spelling, not by parsing every value (66 ms for 1,000 × 100)
            values = [_INF.get(v.strip().lower(), np.nan) if v is not None and "n" in v else np.nan for v in vs]
        out[c] = (missing, np.array(values, dtype=np.float64))
    return out


_INF = {s + w: float(s + "inf") for s in ("", "+", "-") for w in ("inf", "infinity")}


def _as_float(value: str, decimal: str) -> float:
    """A CSV field as pandas reads a number (``inf`` included), NaN if it is not one."""
    if "_" in value:  # Python reads 1_000 as a number, pandas as text
        return float("nan")
    try:
        return float(value.replace(",", ".") if decimal == "," and DECIMAL_COMMA.match(value) else value)
    except ValueError:
        return float("nan")


@contextlib.contextmanager
def long_csv_fields() -> Iterator[None]:
    """Python's ``csv`` reader without its 128 KiB limit on a field (a long free-text field, which pandas reads),
    restored after."""
    old = csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def na_markers(na_values: Sequence[str] | None) -> frozenset[str]:
    """The strings read as a gap: ``data.na_values`` (or pandas' list), and always the empty field."""
    return PANDAS_NA_VALUES if na_values is None else frozenset([*na_values, ""])


def numbers_in_disguise(values: Sequence[str]) -> Disguise | None:
    """What makes a column of numbers read as text; None when it is text.

    - gap markers: numbers, and at most three other strings that are punctuation (``?``, ``-``, ``.``) or a word
      for a gap (``missing``, ``unknown``, …), as UCI files mark gaps (breast cancer, heart disease, auto-mpg);
      read as text, such a column would become one level per number (or be refused as free text);
    - formatted numbers: every value a number once its thousands separators, currency sign or percent sign go
      (``1,234``, ``$1,200``, ``12%``), or written with a decimal comma (``3,14``);
    - stray values: at most three other strings, at most one value in 20 (``abc`` among 700 numbers): read as
      text the column became one level per number and was refused as free text, naming neither the value nor
      the fix."""
    numbers = sum(1 for v in values if is_number(v))
    others = [v for v in values if not is_number(v)]
    if not others:
        return None
    tokens = sorted(set(others))
    marks = all(_MARKER.match(t.strip()) or t.strip().lower() in _MARKER_WORDS or _CENSORED.match(t.strip())
                for t in tokens)
    if numbers >= len(others) and len(tokens) <= 3 and marks:
        return Disguise(tuple(tokens), len(others), len(values), others[0],  # ('? ' named as is)
                        censored=any(_CENSORED.match(t.strip()) for t in tokens))
    if all(_FORMATTED.match(v.strip()) for v in others):
        return Disguise((), len(others), len(values), others[0])
    if numbers >= 19 * len(others) and len(tokens) <= 3:
        return Disguise(tuple(tokens), len(others), len(values), others[0], stray=True)
    return None


def looks_like_a_counter(values: Sequence[str]) -> bool:
    """Distinct whole numbers (at least 100: a small yearly table's years are distinct too) spanning less than 20
    times their count: row numbers, customer ids (also a shuffled sample of them). A unique numeric column that
    is not (incomes, census weights) spans far more; a sweep only notes it (it may be a feature)."""
    if len(values) < 100 or not all(_INTEGER.match(v) for v in values):
        return False
    numbers = [int(v) for v in values]
    return max(numbers) - min(numbers) < 20 * len(numbers)


def zero_padded_code(values: Sequence[str]) -> str | None:
    """A value of a column of codes written with leading zeros (``030001``, ``02134``), or None: digits only,
    all of one width, at least a tenth of them starting with 0. Provider numbers, ZIP codes and FIPS codes
    read as numbers become one linear feature, which is rarely meant."""
    if len(values) < 10 or not all(v.isdigit() and v.isascii() for v in values) or len({len(v) for v in values}) > 1:
        return None
    padded = [v for v in values if len(v) > 1 and v[0] == "0"]
    return padded[0] if len(padded) * 10 >= len(values) else None


def is_free_text(n_levels: int, present: int) -> bool:
    """The rule for a text column made categorical by ``auto``: more distinct values than half its present
    values (and more than two) is free text (names, comments, identifiers)."""
    return bool(present) and n_levels > present / 2 and n_levels > 2


def refuse_free_text(found: Sequence[tuple[str, int, int]]) -> None:
    """One error for every free-text column ``(name, distinct values, present values)`` found, with the fix
    (one at a time, a table of several would take as many runs to learn them)."""
    if not found:
        return
    names = yaml_list([c for c, _, _ in found])
    if len(found) == 1:
        c, n, present = found[0]
        raise DataError(f"column {c!r} looks like free text: {n} distinct values in {present} rows; leave it out with "
                        f"data.exclude: {names}, or list it in data.categorical to keep its values as levels.")
    said = "; ".join(f"{c!r}: {n} distinct values in {present} rows" for c, n, present in found)
    raise DataError(f"{len(found)} columns look like free text ({said}); leave them out with data.exclude: {names}, "
                    "or list them in data.categorical to keep their values as levels.")


_COLUMNS_SHOWN = 30  # names of a table an unknown-column message lists at most


def unknown_columns(key: str, names: Sequence[str], known: Sequence[str], where: str, what: str = "column") -> str:
    """The message for the ``names`` given in ``key`` that ``known`` (the table's columns, or its features:
    ``what``) does not hold: the name each is likely meant to be (the same but for case, or a letter or two
    apart), then the known names (the first :data:`_COLUMNS_SHOWN` of a wide table)."""
    by_case = {k.casefold(): k for k in known}
    close = {}
    for name in names:
        guess = by_case.get(name.casefold()) or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)),
                                                     None)
        if guess is not None:
            close[name] = guess
    if len(names) == 1:
        said = f"{key} {names[0]!r} is not a {what} of {where}"
        hint = f"; did you mean {close[names[0]]!r}?" if close else ""
    else:
        said = f"{key} {list(names)} are not {what}s of {where}"
        hint = "; did you mean " + ", ".join(f"{g!r} for {n!r}" for n, g in close.items()) + "?" if close else ""
    shown = list(known) if len(known) <= _COLUMNS_SHOWN else \
        "[" + ", ".join(map(repr, known[:_COLUMNS_SHOWN])) + f", … ({len(known)} in all)]"
    listed = f"{what}s are {shown}."
    return f"{said}{hint} {listed[0].upper()}{listed[1:]}" if hint else f"{said}; {listed}"


def yaml_list(names: Sequence[str]) -> str:
    """``names`` as a YAML flow list that reads back as these strings: a name YAML would read as something else
    (``Unnamed: 0`` a mapping, ``yes`` a boolean, ``007`` a number) is double-quoted."""
    import yaml

    def item(name: str) -> str:
        try:
            if yaml.safe_load(f"[{name}]") == [name]:
                return name
        except yaml.YAMLError:
            pass
        return json.dumps(name, ensure_ascii=False)

    return "[" + ", ".join(item(n) for n in names) + "]"


def kind_of_strings(values: Sequence[str]) -> str:
    """What a column's text values hold: ``numeric``, ``bool``, ``date`` or ``text`` (gaps taken out before).
    Plain decimal numbers (``-1.5e3``, ``.5``, ``7``) are recognised in one regular-expression match over the
    values joined by newlines (none of which holds one, as the count of newlines shows); others, one by one."""
    joined = "\n".join(values)
    if joined.count("\n") == len(values) - 1 and _PLAIN_NUMBERS.fullmatch(joined):
        return "numeric"
    if all(is_number(v) for v in values):
        return "numeric"  # also an all-missing head: blocks further on decide
    if all(v in _BOOL for v in values):
        return "bool"
    if all(_DATE.match(v) for v in values):
        return "date"
    return "text"


def is_number(v: str) -> bool:
    """Whether pandas' CSV reader reads ``v`` as a number (``1``, ``-2.5e3``, ``inf``): what ``float`` reads, but
    not a NaN spelling (pandas reads only its gap markers as NaN, and those are taken out before: ``NAN``, ``Nan``
    and, under data.na_values, ``nan`` are text to it), digit-group underscores (``1_000``) or non-ASCII digits
    (``１２``), which ``float`` reads and pandas leaves as text: a column the head called numeric failed on them
    after the cluster had started."""
    try:
        x = float(v)
    except ValueError:
        return False
    return x == x and "_" not in v and v.isascii()


def arrow_kind(typ: pa.DataType) -> str:
    """The kind of a stored Arrow type (a dictionary-encoded *physical* column has its logical type here)."""
    import pyarrow as pa

    if pa.types.is_dictionary(typ):
        return "dictionary"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "numeric"  # (a decimal, as databases and Spark store money and measures, is read as float64)
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
            raise DataError(unknown_columns("data.categorical", unknown, list(features), where, "feature"))
    out = []
    leave_out = "drop it from X" if where == "X" else "leave it out with data.exclude"  # fit()'s X, or a source
    for c in features:
        kind = kinds.get(c, "numeric")
        if kind == "date":
            raise DataError(f"column {c!r} of {where} holds dates or times; convert them to numbers (e.g. days "
                            f"since a date) or {leave_out}.")
        if kind == "other":
            raise DataError(f"column {c!r} of {where} has a type regsweep cannot use; convert it to numbers or text, "
                            f"or {leave_out}.")
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
