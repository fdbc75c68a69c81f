"""A retrain's data pass: block fingerprints, then per-fold training and held-out statistics.

Blocks whose record the statistics cache holds are not loaded; the others are
reduced on the workers (:func:`~pipeline.cv.statcache.block_record`) and
their records stored. With a time hold-out the cut-off is known only once
every block's time range is, so the few blocks straddling it are read again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import SweepConfig
from ..data import DataPlan
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

__all__ = ["RetrainStats", "block_fingerprints", "collect_stats"]


@dataclass(frozen=True)
class RetrainStats:
    """The merged record of every block, and how it was obtained."""

    record: BlockRecord
    blocks_read: int
    blocks_cached: int
    cutoff: float | None


def block_fingerprints(client: Client, plan: DataPlan) -> list[str]:
    """The content fingerprint of every block, computed on the workers (raw bytes, no parsing)."""
    plan_f = client.submit(same, plan, pure=False)
    futs = [client.submit(block_fingerprint, plan_f, spec, pure=False) for spec in plan.blocks]
    fingerprints: list[str] = client.gather(futs)
    return fingerprints


def collect_stats(client: Client, plan: DataPlan, fingerprints: Sequence[str], cfg: SweepConfig,
                  cache: StatCache | None) -> RetrainStats:
    """Merged per-fold training and held-out statistics, loading only the blocks the cache lacks."""
    k, seed, holdout = cfg.folds.k, cfg.folds.seed, cfg.retrain.holdout
    keys = [cache_key(plan, spec, fp, k, seed, holdout) for spec, fp in zip(plan.blocks, fingerprints)]
    records = _cached_records(cache, keys, k, plan.n_features)
    missing = [i for i in range(len(plan.blocks)) if i not in records]
    plan_f = client.submit(same, plan, pure=False)
    loaded = _load_records(client, plan_f, plan, missing, cfg, None)
    for i, rec in loaded.items():
        if cache is not None:
            cache.put(keys[i], record_to_bytes(rec))
    records.update(loaded)
    blocks_read = len(missing)
    cutoff = None
    if holdout.time_column:
        cutoff = _time_cutoff(records.values(), holdout.fraction)
        reload = []
        for i, rec in list(records.items()):
            records[i], again = split_record(rec, cutoff)
            if again:
                reload.append(i)
        records.update(_load_records(client, plan_f, plan, reload, cfg, cutoff))
        blocks_read += len(reload)
    merged = records[0]
    for i in range(1, len(plan.blocks)):
        merged = merged + records[i]
    return RetrainStats(merged, blocks_read, len(plan.blocks) - len(missing), cutoff)


def _cached_records(cache: StatCache | None, keys: Sequence[str], k: int, p: int) -> dict[int, BlockRecord]:
    """The records the cache holds (for ``k`` folds and ``p`` features), by block index."""
    records: dict[int, BlockRecord] = {}
    if cache is None:
        return records
    for i, key in enumerate(keys):
        data = cache.get(key)
        rec = record_from_bytes(data) if data is not None else None
        if rec is not None and len(rec.train) == k and rec.heldout.n_features == p:
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
