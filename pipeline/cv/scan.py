"""The level scan on the cluster: one task per block, merged in a tree, decided on the driver."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..data import DataPlan
from ..levels import encoding_from_scan, merge_scans, scan_block
from .passes import MERGE_FAN_IN, same
from .waiting import wait_done

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["scan_columns"]


def scan_columns(client: Client, plan: DataPlan) -> DataPlan:
    """``plan`` with its :class:`~pipeline.encoding.Encoding`, scanning the blocks on the workers when the
    source has categorical columns or imputes (otherwise ``plan`` as it is: no block is read)."""
    if not plan.needs_scan:
        return plan
    plan_f = client.submit(same, plan, pure=False)
    futs = [client.submit(scan_block, plan_f, spec, pure=False) for spec in plan.blocks]
    while len(futs) > 1:
        futs = [client.submit(merge_scans, futs[i : i + MERGE_FAN_IN], pure=False)  # Dask resolves the list
                for i in range(0, len(futs), MERGE_FAN_IN)]
    return plan.with_encoding(encoding_from_scan(plan, wait_done(futs[0])))

