"""regsweep's numeric core: pure NumPy/SciPy, no Dask, no MLflow, no I/O.

- :mod:`.stats`: mergeable centred sufficient statistics of row blocks;
- :mod:`.penalties`: l1 / l2 / elastic net (value, prox, KKT residual);
- :mod:`.active_set`: lasso / elastic net by active-set Newton on a Gram;
- :mod:`.ridge`: ridge and least squares by one eigendecomposition per Gram;
- :mod:`.problem`: centring, standardization and dispatch from statistics;
- :mod:`.controls` and :mod:`.box_gram`: per-feature penalty factors and coefficient limits (glmnet's
  ``penalty.factor`` and ``lower/upper.limits``) and the solver for them;
- :mod:`.design` and :mod:`.rows`: the same problems held as rows (dense or
  sparse), for wide data: no p × p matrix (coordinate descent in :mod:`._cd`,
  Krylov ridge in :mod:`.krylov`).
"""

from ._validate import SolverConvergenceWarning
from .active_set import FactorCache, SolverResult, enet_duality_gap, enet_gram
from .penalties import L1, L2, PENALTY_NAMES, ElasticNet, lambda1_max, make_penalty, soft_threshold
from .problem import FitResult, GramProblem
from .design import RowDesign, is_sparse
from .imputation import MeanImputation
from .ridge import RidgeFactor
from .rows import RowFit, RowProblem
from .stats import SuffStats, label_stats, merge_all

__all__ = [
    "MeanImputation",
    "ElasticNet",
    "FactorCache",
    "FitResult",
    "GramProblem",
    "L1",
    "L2",
    "PENALTY_NAMES",
    "RidgeFactor",
    "RowDesign",
    "RowFit",
    "RowProblem",
    "SolverConvergenceWarning",
    "SolverResult",
    "SuffStats",
    "label_stats",
    "enet_duality_gap",
    "enet_gram",
    "is_sparse",
    "lambda1_max",
    "make_penalty",
    "merge_all",
    "soft_threshold",
]
