"""Per-block statistics for retraining, cached by each block's content fingerprint.

A retrain needs, for the rows of the data, the K per-fold statistics of the
*training* rows and the statistics of the *held-out* rows (see
:class:`~pipeline.config.HoldoutConfig`). Both are sums over rows, so they are
computed per block (:func:`block_record`, on a worker) and merged. When old
data come back with new rows appended, the old blocks' records are read from
a cache instead of loading and reducing the blocks again: only blocks whose
record is missing are loaded (parsed, validated, reduced).

**Block fingerprint** (:func:`block_fingerprint`): a hash of the block's raw
content, computed without parsing: the CSV byte range, the Parquet column
chunks of the block's row groups (needed columns only), the ``.npy`` slices;
synthetic rows are a pure function of ``(generator parameters, first row,
row count)``, which is hashed instead. Hashing bytes is several times cheaper
than parsing them (see ``benchmarks/retrain_cache.py``).

**Cache key** (:func:`cache_key`): the content fingerprint plus everything
else that changes the record: the first global row (fold and held-out
membership are hashes of the global row index, or of the kept rows' numbering
from it when rows are left out, see :mod:`pipeline.folds` and its
``FOLD_NUMBERING``), the row count, the feature / target / weight / time
columns, ``folds.k``, ``folds.seed`` and the hold-out rule. New files that sort *after* the old
ones keep the old blocks' start rows, so their records are reused; a file
inserted before them shifts every later row and those blocks are read again
(correct, only slower).

**Time hold-out**: the cut-off ``t_max − fraction·(t_max − t_min)`` is known
only after every block is seen, so a block's cached record holds all its rows
as training rows plus its ``[t_min, t_max]``. Blocks entirely below the
cut-off use it as is, blocks entirely above it count as held out, and only
the few blocks that straddle the cut-off are read again with it
(:func:`split_record`). Records are stored as ``.npz`` (no pickle).

Stores: :class:`DirCache` (a directory; shared storage when several drivers
retrain) and ``pipeline.tracking.MlflowCache`` (artifacts of one MLflow run
per registered model, in the tracking server's artifact store), both
satisfying :class:`StatCache`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import HoldoutConfig
from ..data import BlockSpec, DataPlan, load_block, time_column_index, with_time_column
from ..encoding import Encoding
from ..levels import ColumnScan, scan_from_json, scan_to_json
from ..recoding import widening_map
from ..folds import FOLD_NUMBERING, block_fold_stats, keyed_hash, kept_row_folds
from ..solvers import SuffStats, merge_all

__all__ = [
    "BlockRecord",
    "DirCache",
    "StatCache",
    "block_fingerprint",
    "block_record",
    "cache_key",
    "data_fingerprint",
    "heldout_rows",
    "record_from_bytes",
    "record_to_bytes",
    "split_record",
]

RECORD_FORMAT = "regsweep-blockstats/1"
_HOLDOUT_SALT = 0x5245_5452_4149_4E00  # "RETRAIN\0": held-out hash independent of the fold hash
_HASH_CHUNK = 1 << 24


# ------------------------------------------------------------ fingerprints
def block_fingerprint(plan: DataPlan, spec: BlockSpec) -> str:
    """Hash of one block's raw content (no parsing; runs on a worker)."""
    h = hashlib.sha256(plan.kind.encode())
    h.update(f"|{spec.n_rows}".encode())
    if plan.kind == "synthetic":
        assert plan.synthetic is not None
        # rows are generated from (p, informative, correlation, noise, seed) and the row index only
        h.update(repr((plan.synthetic[1:], spec.start_row)).encode())
    elif plan.kind == "csv":
        h.update("\x1f".join(plan.columns).encode())
        _hash_range(h, spec.path, *spec.byte_range)
    elif plan.kind == "bundled":
        h.update(f"|{spec.local_start}".encode())
        _hash_range(h, spec.path, 0, os.path.getsize(spec.path))
    elif plan.kind == "parquet":
        _hash_parquet(h, plan, spec)
    elif plan.kind == "npy":
        for path in (plan.source, plan.target, plan.weight, plan.group, plan.offset):
            if path is None:
                continue
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            part = np.ascontiguousarray(arr[spec.local_start : spec.local_start + spec.n_rows])
            h.update(f"{arr.dtype.str}{arr.shape[1:]}".encode())
            h.update(part.data.cast("B"))
    else:  # pragma: no cover - plan_data knows no other kind
        raise ValueError(f"unknown data kind {plan.kind!r}")
    return h.hexdigest()[:32]


def _hash_range(h: Any, path: str, start: int, stop: int) -> None:
    with open(path, "rb") as f:
        f.seek(start)
        left = stop - start
        while left > 0:
            chunk = f.read(min(_HASH_CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)


def _hash_parquet(h: Any, plan: DataPlan, spec: BlockSpec) -> None:
    """The compressed column chunks of the block's row groups, for the columns the plan reads."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(spec.path).metadata
    needed = {*plan.raw_features, plan.target, *(c for c in (plan.weight, plan.group, plan.offset) if c)}
    for rg in spec.row_groups:
        group = meta.row_group(rg)
        for i in range(group.num_columns):
            col = group.column(i)
            if col.path_in_schema not in needed:
                continue
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            h.update(f"{col.path_in_schema}|{col.physical_type}|".encode())
            _hash_range(h, spec.path, start, start + col.total_compressed_size)


def data_fingerprint(plan: DataPlan, block_fingerprints: list[str], time_column: str | None = None) -> str:
    """The fingerprint of the whole data set: its columns and its blocks' contents, in order."""
    h = hashlib.sha256(RECORD_FORMAT.encode())
    h.update(repr((plan.feature_names, plan.target, plan.weight, time_column)).encode())
    if plan.family != "gaussian":  # the same rows under another family, class or offset are other data
        h.update(repr((plan.family, plan.positive_class, plan.offset, plan.exposure)).encode())
    for fp in block_fingerprints:
        h.update(fp.encode())
    return h.hexdigest()[:16]


def cache_key(plan: DataPlan, spec: BlockSpec, block_fp: str, k: int, fold_seed: int, holdout: HoldoutConfig) -> str:
    """Everything a block's record depends on, hashed."""
    rule = ("time", holdout.time_column) if holdout.time_column else ("rows", holdout.fraction, holdout.seed)
    parts: tuple[object, ...] = (RECORD_FORMAT, FOLD_NUMBERING, block_fp, spec.start_row, spec.n_rows,
                                 plan.raw_features, plan.target, plan.weight, k, fold_seed, rule)
    if plan.categorical or plan.missing == "impute":  # levels and gaps live in the record, not in the key
        parts += (plan.categorical, plan.missing, plan.na_values, plan.missing_indicators)
    text = repr(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


# ------------------------------------------------------------ records
@dataclass(frozen=True)
class BlockRecord:
    """The statistics of one block (or of many, merged) for a retrain.

    ``train[f]`` holds the training rows in fold ``f``; ``heldout`` the held-out
    rows; ``t_min``/``t_max`` the block's time range (NaN without a time column).
    """

    train: tuple[SuffStats, ...]
    heldout: SuffStats
    integer_columns: tuple[bool, ...]
    t_min: float = float("nan")
    t_max: float = float("nan")
    columns: tuple[str, ...] = ()  # names of the statistics columns when the source is encoded (levels, gaps)
    centers: dict[str, float] = dataclasses.field(default_factory=dict)  # gappy column -> the centre written
    scan: ColumnScan | None = None  # the block's levels and gaps (a cached block is not scanned again)

    @property
    def train_total(self) -> SuffStats:
        return merge_all(self.train)

    def __add__(self, other: BlockRecord) -> BlockRecord:
        return BlockRecord(
            tuple(a + b for a, b in zip(self.train, other.train)),
            self.heldout + other.heldout,
            tuple(a and b for a, b in zip(self.integer_columns, other.integer_columns)),
            float(np.fmin(self.t_min, other.t_min)),
            float(np.fmax(self.t_max, other.t_max)),
            self.columns, self.centers,
        )

    def all_heldout(self) -> BlockRecord:
        """This block with every row held out (a block entirely past the time cut-off)."""
        p = self.heldout.n_features
        return dataclasses.replace(self, train=tuple(SuffStats.empty(p) for _ in self.train),
                                   heldout=merge_all([*self.train, self.heldout]))

    def widened(self, encoding: Encoding) -> BlockRecord:
        """This record in the statistics columns of ``encoding`` (new levels are zero columns here)."""
        if self.columns == encoding.statistics_names and self.centers == encoding.imputed_centers:
            return self
        A = widening_map(self.columns, self.centers, encoding)
        return dataclasses.replace(self, train=tuple(st.mapped(A) for st in self.train),
                                   heldout=self.heldout.mapped(A), columns=encoding.statistics_names,
                                   centers=encoding.imputed_centers, integer_columns=())


def heldout_rows(start_row: int, n_rows: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows among global rows ``start_row …``: a hash of ``(seed, row)`` below ``fraction``."""
    rows = np.arange(start_row, start_row + n_rows, dtype=np.uint64)
    u = (keyed_hash(seed ^ _HOLDOUT_SALT, rows) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return u < fraction


def block_record(plan: DataPlan, spec: BlockSpec, k: int, fold_seed: int, holdout: HoldoutConfig,
                 cutoff: float | None = None) -> BlockRecord:
    """Load one block and reduce it (runs on a worker).

    Row hold-out: held-out rows by :func:`heldout_rows`. Time hold-out: with
    ``cutoff`` None every row is a training row (the cacheable record); with a
    cut-off, rows at or after it are held out.
    """
    tc = holdout.time_column
    block = load_block(with_time_column(plan, tc), spec)
    at = time_column_index(plan)
    X = np.delete(block.X, at, axis=1) if tc else block.X
    integer = block.integer_columns[: plan.n_features]
    t_min = t_max = float("nan")
    if tc:
        t = block.X[:, at]
        t_min, t_max = float(t.min()), float(t.max())
        held = np.zeros(t.shape[0], dtype=bool) if cutoff is None else t >= cutoff
    else:
        held = heldout_rows(spec.start_row, spec.n_rows, holdout.fraction, holdout.seed)
        if block.kept is not None:  # rows left out (data.missing: drop, a missing target): not the others' labels
            held = held[block.kept]
    folds = kept_row_folds(spec.start_row, spec.n_rows, block.kept, k, fold_seed)  # as the pass deals them
    labels = np.where(held, k, folds)  # held-out rows: label k
    *train, heldout = block_fold_stats(X, block.y, block.weight, labels, k + 1)  # the hold-out: one more fold
    enc = plan.encoding
    return BlockRecord(tuple(train), heldout, tuple(integer), t_min, t_max,
                       enc.statistics_names if enc is not None else (), enc.imputed_centers if enc is not None else {})


def split_record(record: BlockRecord, cutoff: float) -> tuple[BlockRecord, bool]:
    """A cached all-training record under a time cut-off; ``(record, needs_reload)``.

    A block entirely before the cut-off stays training data, one entirely at or
    after it becomes held out; a block straddling it must be read again
    (:func:`block_record` with ``cutoff``).
    """
    if record.t_max < cutoff:
        return record, False
    if record.t_min >= cutoff:
        return record.all_heldout(), False
    return record, True


def record_to_bytes(record: BlockRecord) -> bytes:
    """``.npz`` bytes of a record (plain arrays, loadable without pickle)."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(RECORD_FORMAT),
        "integer_columns": np.array(record.integer_columns, dtype=bool),
        "t_range": np.array([record.t_min, record.t_max]),
        "k": np.array(len(record.train)),
    }
    if record.columns:
        arrays["encoded"] = np.array(json.dumps({"columns": list(record.columns), "centers": record.centers,
                                                 "scan": scan_to_json(record.scan) if record.scan else None}))
    for i, st in enumerate(record.train):
        arrays.update({f"train{i}.{name}": a for name, a in st.to_arrays().items()})
    arrays.update({f"heldout.{name}": a for name, a in record.heldout.to_arrays().items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub fears a key named allow_pickle
    return buf.getvalue()


def record_from_bytes(data: bytes) -> BlockRecord | None:
    """Inverse of :func:`record_to_bytes`; None for anything unreadable (treated as a cache miss)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if str(z["format"]) != RECORD_FORMAT:
                return None
            k = int(z["k"])

            def stats(prefix: str) -> SuffStats:
                return SuffStats.from_arrays({key.split(".", 1)[1]: z[key] for key in z.files
                                              if key.startswith(prefix + ".")})

            t_min, t_max = (float(v) for v in z["t_range"])
            encoded = json.loads(str(z["encoded"])) if "encoded" in z.files else None
            extra: dict[str, Any] = {} if encoded is None else {
                "columns": tuple(encoded["columns"]), "centers": {c: float(x) for c, x in encoded["centers"].items()},
                "scan": scan_from_json(encoded["scan"]) if encoded["scan"] else None}
            return BlockRecord(tuple(stats(f"train{i}") for i in range(k)), stats("heldout"),
                               tuple(bool(v) for v in z["integer_columns"]), t_min, t_max, **extra)
    except (ValueError, KeyError, OSError, EOFError, TypeError):
        return None


# ------------------------------------------------------------ stores
class StatCache(Protocol):
    """Where block records live between retrains."""

    description: str

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


class DirCache:
    """One ``<key>.npz`` file per block in a directory; writes are atomic (temp file + rename)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.description = f"directory {str(self.path)!r}"

    def get(self, key: str) -> bytes | None:
        try:
            return (self.path / f"{key}.npz").read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path / f"{key}.npz")
