"""regsweep: tune lasso, ridge and elastic net at cluster scale.

Public API for one fit on in-memory data::

    import pipeline
    model = pipeline.fit(X, y, penalty="l1", lambda1=0.1)
    model.predict(X_new); model.save("model_dir"); pipeline.FittedModel.load("model_dir")
"""

from .fitting import fit
from .model import FittedModel

__all__ = ["FittedModel", "fit"]
__version__ = "0.1.0"
