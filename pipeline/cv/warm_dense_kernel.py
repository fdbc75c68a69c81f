"""Preloaded by the embedded cluster's fork server when the sweep will use the rows engine on dense data.

Importing it loads the compiled coordinate-descent kernel once in the fork
server (:func:`pipeline.solvers._cd.warm`), so that the workers forked from
it do not each pay ~1 s of numba at their first fit.
"""

from ..solvers._cd import warm

warm(sparse=False)
