"""A retrain's data pass: block fingerprints, then per-fold training and held-out statistics.

Blocks whose record the statistics cache holds are not loaded; the others are
reduced on the workers (:func:`~pipeline.cv.statcache.block_record`) and
their records stored. With a time hold-out the cut-off is known only once
every block's time range is, so the few blocks straddling it are read again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import SweepConfig
from ..data import DataPlan
from ..levels import ColumnScan, encoding_from_scan, merge_scans, scan_block
from .passes import same
from .statcache import (
    BlockRecord,
    StatCache,
    block_fingerprint,
    block_record,
    cache_key,
    record_from_bytes,
    record_to_bytes,
    split_record,
)

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["RetrainColumns", "RetrainStats", "block_fingerprints", "collect_stats", "retrain_columns"]


@dataclass(frozen=True)
class RetrainStats:
    """The merged record of every block, and how it was obtained."""

    record: BlockRecord
    blocks_read: int
    blocks_cached: int
    cutoff: float | None


@dataclass(frozen=True)
class RetrainColumns:
    """A retrain's plan with its levels and gaps known, and the cached records found on the way."""

    plan: DataPlan
    cached: dict[int, BlockRecord]
    scans: dict[int, ColumnScan]  # the blocks scanned now (not cached)


def retrain_columns(client: Client, plan: DataPlan, fingerprints: Sequence[str], cfg: SweepConfig,
                    cache: StatCache | None) -> RetrainColumns:
    """The encoding of today's data: cached blocks give their recorded scans, the others are scanned on the
    workers. A source without categorical columns or imputation needs neither."""
    keys = _keys(plan, fingerprints, cfg)
    cached = _cached_records(cache, keys, cfg.folds.k, plan.n_features if not plan.needs_scan else None)
    if not plan.needs_scan:
        return RetrainColumns(plan, cached, {})
    cached = {i: rec for i, rec in cached.items() if rec.scan is not None}
    todo = [i for i in range(len(plan.blocks)) if i not in cached]
    plan_f = client.submit(same, plan, pure=False)
    scans = dict(zip(todo, client.gather([client.submit(scan_block, plan_f, plan.blocks[i], pure=False)
                                           for i in todo])))
    merged = merge_scans([*(rec.scan for rec in cached.values() if rec.scan is not None), *scans.values()])
    return RetrainColumns(plan.with_encoding(encoding_from_scan(plan, merged)), cached, scans)


def _keys(plan: DataPlan, fingerprints: Sequence[str], cfg: SweepConfig) -> list[str]:
    return [cache_key(plan, spec, fp, cfg.folds.k, cfg.folds.seed, cfg.retrain.holdout)
            for spec, fp in zip(plan.blocks, fingerprints)]


def block_fingerprints(client: Client, plan: DataPlan) -> list[str]:
    """The content fingerprint of every block, computed on the workers (raw bytes, no parsing)."""
    plan_f = client.submit(same, plan, pure=False)
    futs = [client.submit(block_fingerprint, plan_f, spec, pure=False) for spec in plan.blocks]
    fingerprints: list[str] = client.gather(futs)
    return fingerprints


def collect_stats(client: Client, columns: RetrainColumns, fingerprints: Sequence[str], cfg: SweepConfig,
                  cache: StatCache | None) -> RetrainStats:
    """Merged per-fold training and held-out statistics, loading only the blocks the cache lacks; cached
    records of an encoded source are widened to today's levels (:meth:`BlockRecord.widened`)."""
    plan, records = columns.plan, dict(columns.cached)
    keys = _keys(plan, fingerprints, cfg)
    missing = [i for i in range(len(plan.blocks)) if i not in records]
    plan_f = client.submit(same, plan, pure=False)
    loaded = _load_records(client, plan_f, plan, missing, cfg, None)
    for i, rec in loaded.items():
        if i in columns.scans:
            loaded[i] = rec = dataclasses.replace(rec, scan=columns.scans[i])
        if cache is not None:
            cache.put(keys[i], record_to_bytes(rec))
    if plan.encoding is not None:
        records = {i: rec.widened(plan.encoding) for i, rec in records.items()}
    records.update(loaded)
    read = set(missing)
    cutoff = None
    holdout = cfg.retrain.holdout
    if holdout.time_column:
        cutoff = _time_cutoff(records.values(), holdout.fraction)
        reload = []
        for i, rec in list(records.items()):
            records[i], again = split_record(rec, cutoff)
            if again:
                reload.append(i)
        records.update(_load_records(client, plan_f, plan, reload, cfg, cutoff))
        read.update(reload)  # a block read twice (new, and across the cut-off) counts once; a cached one is read
    merged = records[0]
    for i in range(1, len(plan.blocks)):
        merged = merged + records[i]
    return RetrainStats(merged, len(read), len(plan.blocks) - len(read), cutoff)


def _cached_records(cache: StatCache | None, keys: Sequence[str], k: int, p: int | None) -> dict[int, BlockRecord]:
    """The records the cache holds (for ``k`` folds and ``p`` features; an encoded record names its own
    columns, ``p`` None), by block index."""
    records: dict[int, BlockRecord] = {}
    if cache is None:
        return records
    for i, key in enumerate(keys):
        data = cache.get(key)
        rec = record_from_bytes(data) if data is not None else None
        if rec is None or len(rec.train) != k:
            continue
        width = rec.heldout.n_features
        if (width == p and not rec.columns) if p is not None else (width == len(rec.columns) > 0):
            records[i] = rec
    return records


def _load_records(client: Client, plan_f: Future, plan: DataPlan, blocks: Sequence[int], cfg: SweepConfig,
                  cutoff: float | None) -> dict[int, BlockRecord]:
    """Reduce the given blocks on the workers (with the time cut-off, if any)."""
    if not blocks:
        return {}
    k, seed, holdout = cfg.folds.k, cfg.folds.seed, cfg.retrain.holdout
    futs = [client.submit(block_record, plan_f, plan.blocks[i], k, seed, holdout, cutoff, pure=False)
            for i in blocks]
    return dict(zip(blocks, client.gather(futs)))


def _time_cutoff(records: Iterable[BlockRecord], fraction: float) -> float:
    """``t_max − fraction·(t_max − t_min)`` over every block's time range."""
    recs = list(records)
    t_min = min(r.t_min for r in recs)
    t_max = max(r.t_max for r in recs)
    return float(t_max - fraction * (t_max - t_min))
