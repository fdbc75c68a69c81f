"""The model registry: versions by alias or by data fingerprint, their models, aliases and decision tags."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RetrainInputError
from ..model import FittedModel
from .models import _alias_version

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["TAG", "RegisteredVersion", "alias_version", "load_version", "recorded_champion", "set_alias",
           "tag_version", "versions_with_fingerprint"]

TAG = "regsweep."
TARGET_TAG = f"{TAG}target"  # a version's target column: retrain refuses another one


@dataclass(frozen=True)
class RegisteredVersion:
    """A version of a registered model, with its regsweep model and tags."""

    version: int
    alias: str | None
    model: FittedModel
    tags: dict[str, str]


def alias_version(client: MlflowClient, name: str, alias: str) -> Any:
    """The ``ModelVersion`` behind ``name@alias``, or None if the alias is not set."""
    return _alias_version(client, name, alias)


def load_version(client: MlflowClient, uri: str, name: str, mv: Any, alias: str | None) -> RegisteredVersion:
    """Download version ``mv`` of ``name`` and read its regsweep model (no pickle)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        with contextlib.redirect_stderr(io.StringIO()):  # a progress bar per download
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}",
                                                             dst_path=tmp))
        found = sorted(local.rglob("model.json"))
        if not found:
            raise RetrainInputError(
                f"registered model {name!r} version {mv.version} holds no regsweep model (model.json); "
                "it was not registered by regsweep."
            )
        model = FittedModel.load(found[0].parent)
    return RegisteredVersion(int(mv.version), alias, model, dict(mv.tags or {}))


def versions_with_fingerprint(client: MlflowClient, name: str, fingerprint: str) -> list[Any]:
    """Retrain versions of ``name`` trained on data with this fingerprint and carrying a decision."""
    flt = f"name = '{name}' and tags.`{TAG}data_fingerprint` = '{fingerprint}'"
    found = client.search_model_versions(flt)
    return sorted((mv for mv in found if (mv.tags or {}).get(f"{TAG}kind") == "retrain"
                   and f"{TAG}decision" in (mv.tags or {})), key=lambda mv: int(mv.version))


def recorded_champion(client: MlflowClient, name: str) -> tuple[int, int] | None:
    """The champion the latest retrain of ``name`` recorded (``regsweep.champion_version``) and that retrain's
    version; None if no retrain recorded one, or that version no longer exists."""
    from mlflow.exceptions import MlflowException

    found = [mv for mv in client.search_model_versions(f"name = '{name}'")
             if (mv.tags or {}).get(f"{TAG}kind") == "retrain" and f"{TAG}champion_version" in (mv.tags or {})]
    if not found:
        return None
    latest = max(found, key=lambda mv: int(mv.version))
    champion = int(latest.tags[f"{TAG}champion_version"])
    try:
        client.get_model_version(name, str(champion))
    except MlflowException:  # deleted as well
        return None
    return champion, int(latest.version)


def set_alias(client: MlflowClient, name: str, alias: str, version: int) -> None:
    """Point ``name@alias`` at ``version``."""
    client.set_registered_model_alias(name, alias, str(version))


def tag_version(client: MlflowClient, name: str, version: int, tags: Mapping[str, str]) -> None:
    """Set ``tags`` on a model version, in the order given (the last one can mark it complete)."""
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
