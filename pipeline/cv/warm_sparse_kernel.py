"""Preloaded by the embedded cluster's fork server when the sweep will use the rows engine on sparse data.

As :mod:`.warm_dense_kernel`, for the kernel on CSC columns.
"""

from ..solvers._cd import warm

warm(sparse=True)
