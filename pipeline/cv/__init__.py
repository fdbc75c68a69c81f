"""What runs on the Dask cluster, and where: the cross-validation wing.

- :mod:`.client`: connect to a scheduler or start the embedded LocalCluster;
- :mod:`.engines`: the two engines as the sweep sees them (placement and tasks on all rows);
- :mod:`.passes`: the Gram engine's one data pass (per-block, per-fold statistics, merged in a fixed tree);
- :mod:`.fold_models`: the Gram engine's fold models, and candidate scoring on any fold model;
- :mod:`.placement`: where fold models live, rebuilt from their source when lost;
- :mod:`.rows`, :mod:`.row_models`, :mod:`.row_placement`: the rows engine (wide data: the rows on
  every worker, K fold problems sharing them, no p × p matrix);
- :mod:`.scoring` and :mod:`.path`: what a fold score and a fold path are; the dense path;
- :mod:`.refit`: search bounds, the refit on all rows, example rows;
- :mod:`.statcache` and :mod:`.retrain_pass`: a retrain's cached block statistics;
- :mod:`.waiting`: waiting for futures without ``result(timeout=…)``.

Imports neither Optuna nor MLflow; distributed is imported where a function
needs it, so importing this package stays cheap.
"""

from .client import check_scheduler, cluster_workers, open_client, prestart_local_workers, total_threads
from .fold_models import FoldModel, Scorable, score_folds, score_slots
from .passes import BlockPass, pass_summary, same, submit_data_pass
from .placement import FoldPlacement, FoldSlot, Placement, cover, placement_of_pass
from .refit import example_rows, integer_columns, pass_bounds, refit, refit_pass, search_bounds
from .scoring import FoldScore
from .retrain_pass import RetrainColumns, RetrainStats, block_fingerprints, collect_stats, retrain_columns
from .statcache import DirCache, StatCache, data_fingerprint
from .waiting import CONNECTION_LOST, LOST, cancel_reason, next_ready, result_or_lost, wait_done, worker_left

__all__ = [
    "CONNECTION_LOST",
    "LOST",
    "BlockPass",
    "DirCache",
    "FoldModel",
    "FoldPlacement",
    "FoldScore",
    "FoldSlot",
    "Placement",
    "RetrainColumns",
    "RetrainStats",
    "Scorable",
    "StatCache",
    "block_fingerprints",
    "cancel_reason",
    "check_scheduler",
    "cluster_workers",
    "cover",
    "collect_stats",
    "retrain_columns",
    "data_fingerprint",
    "example_rows",
    "integer_columns",
    "next_ready",
    "open_client",
    "prestart_local_workers",
    "pass_bounds",
    "pass_summary",
    "placement_of_pass",
    "refit",
    "refit_pass",
    "result_or_lost",
    "same",
    "score_folds",
    "score_slots",
    "search_bounds",
    "submit_data_pass",
    "total_threads",
    "wait_done",
    "worker_left",
]
