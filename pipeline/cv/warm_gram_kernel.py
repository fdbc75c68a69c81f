"""Preloaded by the embedded cluster's fork server when the sweep has penalty factors or coefficient limits.

Importing it loads the compiled coordinate sweep on a Gram once in the fork server
(:func:`pipeline.solvers._cd.warm_gram`; :mod:`pipeline.solvers.box_gram` runs it for every fit with
factors or limits, on either engine), so that the workers forked from it do not each pay numba's
cache load at their first such fit.
"""

from ..solvers._cd import warm_gram

warm_gram()
