"""regsweep models in MLflow: logged as a pyfunc with a loader module, never pickled.

A model is logged with the *loader module* ``pipeline.tracking`` (its
``_load_pyfunc``) and a data directory holding ``model.json`` + ``arrays.npz``
(:meth:`pipeline.model.FittedModel.save`): ``mlflow.pyfunc.load_model`` then
imports regsweep and reads plain data. Models logged by earlier layouts name
the same loader module and keep loading.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model import SIGNATURE_MAX_COLUMNS, FittedModel
from ._mlflow_internals import no_installed_package_scan, set_active_experiment

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["LOADER_MODULE", "MODEL_ARTIFACT", "SIGNATURE_MAX_COLUMNS", "PyfuncModel", "load_pyfunc", "log_model",
           "log_run_metrics"]

MODEL_ARTIFACT = "model"
LOADER_MODULE = "pipeline.tracking"


def log_model(
    client: MlflowClient, uri: str, experiment_id: str, run_id: str, model: FittedModel, input_example: Any,
    registered_model: str | None, version_tags: Mapping[str, str] | None = None, alias: str | None = "candidate",
    metrics: Mapping[str, float] | None = None,
) -> tuple[str, int | None]:
    """Log ``model`` as a pyfunc on ``run_id`` and register it under ``alias``; returns (model URI, version).

    ``metrics`` (the run's, step 0) are logged after the model, carrying its id: MLflow 3 shows a run's
    metrics on the page of the model logged from it, and links those the run holds when the model is
    logged by reading each one's history back (one request per metric against a server, 8 of the 23
    requests of a sweep's model); logged with the id they are linked in the same single request.

    The model is a logged model of ``experiment_id`` (the run's): MLflow 3 files
    a model logged outside an active run under the active experiment, the
    Default one unless told, and the run page then shows "Logged models (0)".

    ``alias=None`` registers without moving any alias and without the no-op
    check below (``regsweep retrain`` decides on ``champion`` itself).
    ``input_example`` is a DataFrame (or its Parquet bytes) of a few rows as
    the source holds them: its dtypes become the signature (none for more than
    :data:`SIGNATURE_MAX_COLUMNS` columns). If the current
    ``candidate`` version carries the same ``version_tags`` (same study, best
    trial and data), nothing new is logged or registered: re-running a
    finished sweep is a no-op.
    """
    import mlflow
    from mlflow.models import Model, infer_signature

    tags = dict(version_tags or {})
    if registered_model and tags and alias == "candidate":
        current = _alias_version(client, registered_model, alias)
        if current is not None and all(current.tags.get(k) == v for k, v in tags.items()):
            log_run_metrics(client, run_id, metrics)
            return str(current.source), int(current.version)
    signature = None
    if model.n_features > SIGNATURE_MAX_COLUMNS:
        input_example = None
    elif isinstance(input_example, bytes):  # Parquet, as a sweep's driver passes it on (b"": none was read)
        input_example = _read_parquet(input_example) if input_example else None
    if input_example is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            prediction = pyfunc_output(model, input_example)
            signature = _signature(input_example, infer_signature(input_example, prediction))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    set_active_experiment(experiment_id)  # checked when the sweep got or created it: no request to check it again
    with tempfile.TemporaryDirectory() as tmp, no_installed_package_scan():
        data_dir = model.save(Path(tmp) / "regsweep_model")
        info = Model.log(
            artifact_path=None, name=MODEL_ARTIFACT, flavor=mlflow.pyfunc,
            run_id=run_id,  # not mlflow.start_run(run_id): leaving it would end the parent run
            loader_module=LOADER_MODULE, data_path=str(data_dir), signature=signature,
            input_example=input_example, pip_requirements=[f"regsweep=={_version()}"],
        )
    log_run_metrics(client, run_id, metrics, model_id=info.model_id)
    version = None
    if registered_model:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            mv = mlflow.register_model(info.model_uri, registered_model, await_registration_for=30, tags=tags)
        version = int(mv.version)
        if alias:
            _set_alias(client, registered_model, alias, str(version))
    return info.model_uri, version


def log_run_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float | None] | None, step: int = 0,
                    model_id: str | None = None) -> None:
    """The finite ``metrics`` on ``run_id`` at ``step`` (others left out), linked to the logged model
    ``model_id`` if given; in batches of 1,000 (MLflow's limit per request)."""
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step, model_id=model_id) for k, v in (metrics or {}).items()
             if v is not None and math.isfinite(v)]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i : i + 1000], synchronous=True)


def _set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version``, once more if another writer created the alias meanwhile.

    MLflow's SQL store sets an alias by a read, then an insert or an update (``session.merge``): two sweeps
    registering the same model at once (the fault test of two drivers on new SQLite files, 1 CI run in
    several) both read no alias and the second insert fails on the unique key. Tried again, the read finds
    the row and updates it: the later writer wins, as when the two run one after the other.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.set_registered_model_alias(name, alias, version)
    except MlflowException as e:
        if "UNIQUE constraint" not in str(e) and "duplicate key" not in str(e):
            raise
        client.set_registered_model_alias(name, alias, version)


def _read_parquet(data: bytes) -> Any:
    """The DataFrame of Parquet bytes."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(data))


def _signature(example: Any, inferred: Any) -> Any:
    """The inferred signature with every input column typed ``Any`` (still named and required).

    A linear model takes integers and floats alike, but MLflow enforces a
    column's type: a ``long`` column refused float input ("Can not safely
    convert float64 to int64"), and a ``double`` column refuses int64 input
    (more than 2⁵³ cannot be exact). The model itself converts every column
    to float64, so the signature names the columns and lets any number in.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = Schema([ColSpec(AnyType(), str(name), required=True) for name in example.columns])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs)


def _alias_version(client: MlflowClient, name: str, alias: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _version() -> str:
    from .. import __version__

    return __version__


class PyfuncModel:
    """What ``mlflow.pyfunc.load_model`` returns for a regsweep model."""

    def __init__(self, model: FittedModel) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """What the logged signature's output names: see :func:`pyfunc_output`."""
        return pyfunc_output(self.model, model_input)

    def get_raw_model(self) -> FittedModel:
        """The :class:`~pipeline.model.FittedModel` (``loaded.get_raw_model()``): it also predicts
        ``scipy.sparse`` rows, which a pyfunc signature cannot describe."""
        return self.model


def pyfunc_output(model: FittedModel, model_input: Any) -> Any:
    """The pyfunc prediction of ``model_input``: the array of predictions (gaussian), or for binomial and
    Poisson models a one-column DataFrame named as the signature's output (``probability_<positive class>``,
    ``expected_count``), so that a served model says which class its probabilities are of. A frame's index
    is kept, for joining the predictions back to their rows."""
    values = model.predict(model_input)
    if model.family == "gaussian":
        return values
    import pandas as pd

    index = model_input.index if isinstance(model_input, pd.DataFrame) else None
    return pd.DataFrame({model.prediction_name: values}, index=index)


def load_pyfunc(data_path: str) -> PyfuncModel:
    """MLflow's loader-module hook: read ``model.json`` + ``arrays.npz`` (no pickle)."""
    return PyfuncModel(FittedModel.load(data_path))
