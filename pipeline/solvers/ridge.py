"""Ridge and least squares on a Gram matrix: factor once, solve for any λ2.

For λ1 = 0 the objective ``½βᵀGβ − qᵀβ + (λ2/2)‖β‖²`` has the closed form
``β = (G + λ2 I)⁻¹ q``. With the eigendecomposition ``G = V diag(e) Vᵀ``
(``O(p³)``, once per fold) every λ2 then costs ``O(p²)``:

    β(λ2) = V · ( (Vᵀq) / (e + λ2) )

λ2 = 0 is least squares, which this gives as the minimum-norm solution when
G is singular: eigenvalues below ``p · eps · max(e)`` (numpy's ``pinv``
cut-off on G) are treated as zero and their directions get no weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RidgeFactor"]


@dataclass(frozen=True, eq=False)
class RidgeFactor:
    """Eigendecomposition of a symmetric PSD Gram, reused across λ2.

    Attributes
    ----------
    eigvals : ndarray of shape (p,)
        Eigenvalues of G, negatives from rounding clipped to 0.
    eigvecs : ndarray of shape (p, p)
        Orthonormal eigenvectors V.
    vtq : ndarray of shape (p,)
        ``Vᵀ q``, the only part of the right-hand side a solve needs.
    rank_cutoff : float
        Eigenvalues at or below this count as zero (least-squares case).
    """

    eigvals: np.ndarray
    eigvecs: np.ndarray
    vtq: np.ndarray
    rank_cutoff: float

    @classmethod
    def from_gram(cls, G: np.ndarray, q: np.ndarray) -> RidgeFactor:
        """Factor ``G`` (``O(p³)``) and project ``q``."""
        p = G.shape[0]
        if p == 0:
            return cls(np.zeros(0), np.zeros((0, 0)), np.zeros(0), 0.0)
        import scipy.linalg  # here, not at import: see active_set._lapack

        e, V = scipy.linalg.eigh(G, check_finite=False)
        e = np.maximum(e, 0.0)
        cutoff = float(e[-1]) * p * np.finfo(np.float64).eps
        return cls(eigvals=e, eigvecs=V, vtq=V.T @ q, rank_cutoff=cutoff)

    @property
    def rank(self) -> int:
        """Numerical rank of G."""
        return int(np.count_nonzero(self.eigvals > self.rank_cutoff))

    @property
    def spectrum_range(self) -> tuple[float, float]:
        """Smallest non-zero and largest eigenvalue (for λ2 search bounds)."""
        positive = self.eigvals[self.eigvals > self.rank_cutoff]
        if positive.size == 0:
            return (0.0, 0.0)
        return (float(positive[0]), float(positive[-1]))

    def solve(self, lambda2: float) -> np.ndarray:
        """``(G + λ2 I)⁻¹ q``, or the minimum-norm least-squares β for λ2 = 0. ``O(p²)``."""
        denom = self.eigvals + lambda2
        keep = denom > (self.rank_cutoff if lambda2 == 0.0 else 0.0)
        scaled = np.zeros_like(self.vtq)
        scaled[keep] = self.vtq[keep] / denom[keep]
        return self.eigvecs @ scaled
