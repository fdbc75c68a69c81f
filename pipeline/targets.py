"""Targets and offsets of the families: what each accepts, its numeric form, and a one-line error otherwise.

- ``gaussian``: any finite number (:func:`~pipeline.validation.check_target`).
- ``binomial``: 0/1, booleans, or two labels (text or numbers). The positive class (coded 1) is
  ``positive_class`` when given, else 1 / True, else the second of the two labels in sorted order (scikit-learn's
  ``classes_[1]``). Every other row is the negative class (coded 0).
- ``poisson``: non-negative counts (or rates: non-integers are allowed, as in glmnet and scikit-learn).

An offset enters the linear predictor with coefficient 1: ``data.offset`` is a log-exposure column (any finite
value), ``data.exposure`` a positive column whose log is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError
from .solvers.families import FAMILY_NAMES
from .validation import check_target

__all__ = ["BinaryLabels", "binary_target", "check_family", "check_offset", "check_target_sample", "count_target",
           "family_target", "same_label"]

def check_family(family: object, where: str = "family") -> str:
    """``family`` if it is one of :data:`~pipeline.solvers.families.FAMILY_NAMES`, else a one-line error naming
    the choices."""
    if family not in FAMILY_NAMES:
        raise DataError(f"`{where}` must be one of {list(FAMILY_NAMES)}, got {family!r}.")
    return str(family)


@dataclass(frozen=True)
class BinaryLabels:
    """The two classes of a binomial target: ``negative`` is coded 0, ``positive`` 1 (JSON-able values)."""

    negative: Any
    positive: Any

    def describe(self) -> str:
        return f"positive class {self.positive!r} (1), negative {self.negative!r} (0)"

    def in_label_order(self, coded: np.ndarray) -> np.ndarray:
        """The 0/1 codes renumbered by the labels' sorted order (0: the label that sorts first), whichever is
        positive: what stratified folds deal by, so that choosing the other ``positive_class`` keeps the folds."""
        negative, positive = ((str(self.negative), str(self.positive)) if isinstance(self.positive, str)
                              else (self.negative, self.positive))
        return coded if positive > negative else 1.0 - coded


_YAML_TRUE = ("true", "yes", "y", "on")
_YAML_FALSE = ("false", "no", "n", "off")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and MLflow keep (``np.int64(1)`` → 1, ``np.str_`` → str, a whole
    float label → int: a 0/1 target read as floats has classes 0 and 1)."""
    value = value.item() if isinstance(value, np.generic) else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def same_label(label: Any, given: Any) -> bool:
    """Whether a label is the one given: as values (``True`` and 1), as text (``"1"`` and 1), and a text label
    matches the boolean YAML makes of it (``positive_class: yes`` reads as true)."""
    if label == given or str(label) == str(given):
        return True
    if isinstance(given, bool) and isinstance(label, str):
        return label.strip().lower() in (_YAML_TRUE if given else _YAML_FALSE)
    if isinstance(label, bool) and isinstance(given, str):  # a true/false column read as booleans: 'TRUE', 'false'
        return given.strip().lower() in (_YAML_TRUE if label else _YAML_FALSE)
    return False


def binary_target(y: object, n_rows: int, positive_class: Any = None, name: str = "y") -> tuple[np.ndarray,
                                                                                                 BinaryLabels]:
    """The 0/1 target of a binomial model and its labels; a one-line error for anything but two classes."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise DataError(f"{_named(name)} must hold one label per row of X ({n_rows} rows), got shape {arr.shape}.")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise DataError(f"{_named(name)} has missing labels (first at row {int(np.flatnonzero(np.isnan(arr))[0])}); "
                        "drop those rows first.")
    if arr.dtype.kind == "O":
        missing = [i for i, v in enumerate(arr) if v is None or (isinstance(v, float) and v != v)]
        if missing:
            raise DataError(f"{_named(name)} has missing labels (first at row {missing[0]}); drop those rows first.")
    text = arr.dtype.kind in "OUS"
    keys = arr.astype(str) if text else arr
    labels = [_plain(v) for v in np.unique(keys)]
    if len(labels) != 2:
        shown = ", ".join(repr(v) for v in labels[:5]) + (", ..." if len(labels) > 5 else "")
        raise DataError(f"family binomial needs a target with two classes, but {_named(name)} has {len(labels)} "
                        f"({shown}); " + (_more_than_two(text) if len(labels) > 2
                                          else "check the target column and the rows read."))
    if positive_class is not None:
        match = [v for v in labels if same_label(v, positive_class)]
        if not match:
            raise DataError(f"`positive_class` {positive_class!r} is not a label of {_named(name)}; its labels are "
                            f"{labels}.")
        positive = match[0]
    else:
        positive = labels[-1]  # sorted: 1 / True for 0/1 and booleans, scikit-learn's classes_[1] for text
    negative = labels[0] if labels[1] == positive else labels[1]
    coded = np.asarray(keys == (str(positive) if text else positive), dtype=np.float64)
    return coded, BinaryLabels(negative=negative, positive=positive)


def _named(name: str) -> str:
    """A target's name in a message: an argument of the API in backticks (`y`); a config key with its column
    and place (``data.target 'label' in d.csv rows 0-999``) as it is."""
    return f"`{name}`" if name.isidentifier() else name


def _many(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def count_target(y: object, n_rows: int, name: str = "y") -> np.ndarray:
    """Non-negative finite counts (or rates) as float64; a one-line error for a negative value."""
    arr = check_target(y, n_rows, name)
    if (arr < 0).any():
        j = int(np.flatnonzero(arr < 0)[0])
        raise DataError(f"family poisson needs non-negative counts, but {_named(name)} has "
                        f"{_many(int((arr < 0).sum()), 'negative value')} (first: {float(arr[j])!r} at row {j}); "
                        "fix or remove those rows (counts are never negative), or sweep a signed target with "
                        "model.family: gaussian.")
    return arr


def check_target_sample(family: str, y: np.ndarray, labels: np.ndarray | None, kept: np.ndarray, *, name: str,
                        where: str, positive_class: Any = None, booleans: bool = False) -> None:
    """The family's rules that some rows alone break for the whole target: more than two classes (binomial), a
    ``positive_class`` that is neither of two classes seen, or a negative count (Poisson), among the ``kept`` rows
    of a sample (``y``, or the text ``labels`` of a binomial target; ``booleans``: ``y`` holds true/false values as
    1/0, the classes True and False). What only every row can tell (one class,
    every count zero, whether a positive class not yet seen comes later) is not judged here."""
    rows = np.flatnonzero(kept)
    if family == "binomial":
        keys = labels[rows].astype(str) if labels is not None else (y[rows] == 1.0) if booleans else y[rows]
        seen = np.unique(keys).size
        if seen > 2 or (seen == 2 and positive_class is not None):
            binary_target(keys, keys.size, positive_class, name=f"{name} in {where}")  # raises, naming the classes
    elif family == "poisson":
        negative = rows[y[rows] < 0]
        if negative.size:
            raise DataError(f"family poisson needs non-negative counts, but {_named(name)} has "
                            f"{_many(negative.size, 'negative value')} in {where} (first: "
                            f"{float(y[negative[0]])!r} at row {int(negative[0])}); fix or remove those rows (counts "
                            "are never negative), or sweep a signed target with model.family: gaussian.")


def family_target(family: str, y: object, n_rows: int, positive_class: Any = None,
                  name: str = "y") -> tuple[np.ndarray, BinaryLabels | None]:
    """The numeric target of ``family`` and, for binomial, its labels."""
    if family == "binomial":
        return binary_target(y, n_rows, positive_class, name)
    if positive_class is not None:
        raise DataError(f"`positive_class` applies to family binomial only, not {family}.")
    if family == "poisson":
        return count_target(y, n_rows, name), None
    return check_target(y, n_rows, name), None


def check_offset(values: object, n_rows: int, *, exposure: bool = False, name: str = "offset") -> np.ndarray:
    """A finite offset per row; with ``exposure`` the values must be positive and their log is returned."""
    arr = check_target(values, n_rows, name)
    if exposure:
        if (arr <= 0).any():
            j = int(np.flatnonzero(arr <= 0)[0])
            bad = int((arr <= 0).sum())
            raise DataError(f"{_named(name)} must be positive (its log is the offset), but {_many(bad, 'value')} "
                            f"{'is' if bad == 1 else 'are'} <= 0 (first: {float(arr[j])!r} at row {j}); drop those "
                            "rows or fix the column.")
        return np.log(arr)
    return arr


def _more_than_two(text: bool) -> str:
    """What to do with a binomial target of more than two labels (regsweep fits no multinomial model)."""
    if text:
        return ("recode it to two classes in the data, e.g. one label against the rest (a model per label); "
                "regsweep fits no multinomial model.")
    return "model a numeric target with family gaussian (or poisson for counts), or recode it to two classes."
